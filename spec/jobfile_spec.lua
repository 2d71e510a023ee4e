-- lrun.jobfile: loading Lua and YAML job files and validating them into the spec.
local jobfile = require "lrun.jobfile"
local sandbox = require "lrun.jobfile.sandbox"
local core = require "lprocess.core"
local lp = require "lprocess"

local FIX = "spec/fixtures/"

local function cwd()
  local ok, lfs = pcall(require, "lfs")
  if ok then return lfs.currentdir() end
  return os.getenv("PWD")
end
local ROOT = cwd()
local FIXDIR = ROOT .. "/spec/fixtures"

-- Every small job file is written as jobs.lua / jobs.yaml in one temp directory, so
-- messages name "jobs.lua" like a user's file would.
local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "'"))

local function write(name, text)
  local path = TMP .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function load_lua(text) return jobfile.load(write("jobs.lua", text)) end
local function load_yaml(text) return jobfile.load(write("jobs.yaml", text)) end

-- The first error of a file that must not validate.
local function err_lua(text)
  local spec, msg, errs = load_lua(text)
  assert.is_nil(spec)
  assert.is_string(msg)
  assert.is_table(errs)
  assert.equal(msg, errs[1])
  return msg, errs
end

local function err_yaml(text)
  local spec, msg = load_yaml(text)
  assert.is_nil(spec)
  return msg
end

-- The validated job of a one-job file: job "x" { <body> }.
local function one(body)
  local spec, msg = load_lua('job "x" { ' .. body .. ' }\n')
  assert(spec, msg)
  return spec.by_name.x
end

local function one_err(body)
  return (err_lua('job "x" { ' .. body .. ' }\n'))
end

-- What the YAML and Lua forms must share: everything but the file itself.
local function comparable(spec)
  local copy = {}
  for k, v in pairs(spec) do copy[k] = v end
  copy.file, copy.format = nil, nil
  copy.jobs, copy.by_name = {}, {}
  for i, job in ipairs(spec.jobs) do
    local j = {}
    for k, v in pairs(job) do j[k] = v end
    -- `where` names the file ("jf_equiv.lua:12" vs "jf_equiv.yaml:9"), so it differs.
    j.where = nil
    copy.jobs[i] = j
    copy.by_name[j.name] = j
  end
  return copy
end

describe("lrun.jobfile", function()
  teardown(function()
    os.execute("rm -rf '" .. TMP .. "'")
  end)

  describe("find", function()
    it("prefers jobs.lua, then jobs.yaml, then jobs.yml", function()
      assert.equal(FIX .. "jf_find_all/jobs.lua", jobfile.find(FIX .. "jf_find_all"))
      assert.equal(FIX .. "jf_find_yaml/jobs.yaml", jobfile.find(FIX .. "jf_find_yaml"))
      assert.equal(FIX .. "jf_find_yml/jobs.yml", jobfile.find(FIX .. "jf_find_yml/"))
    end)

    it("returns nil and a message when there is none", function()
      local path, msg = jobfile.find(FIX .. "jf_find_none")
      assert.is_nil(path)
      assert.matches("no job file", msg)
      assert.matches("jobs.lua, jobs.yaml, jobs.yml", msg, 1, true)
    end)

    it("defaults to the current directory", function()
      local path = jobfile.find()
      -- The repository root has no jobs file; what matters is that "." is searched.
      if path then assert.matches("^%./jobs", path) end
      local path2, msg = jobfile.find()
      if not path2 then assert.matches(" in %.$", msg) end
    end)
  end)

  describe("load", function()
    it("reports a missing file", function()
      local spec, msg = jobfile.load(TMP .. "/nope.lua")
      assert.is_nil(spec)
      assert.matches("nope.lua: No such file or directory", msg, 1, true)
    end)

    it("builds the spec of a Lua file: file, dir, format, order, by_name", function()
      local spec = assert(jobfile.load(FIX .. "jf_equiv.lua"))
      assert.equal(FIXDIR .. "/jf_equiv.lua", spec.file)
      assert.equal(FIXDIR, spec.dir)
      assert.equal("lua", spec.format)
      local names = {}
      for i, job in ipairs(spec.jobs) do
        names[i] = job.name
        assert.equal(job, spec.by_name[job.name])
      end
      assert.same({ "fetch", "build", "db", "test", "lint", "report", "worker" }, names)
      assert.same({}, spec.policies)
    end)

    it("records where each job was defined as basename:line", function()
      local spec = assert(jobfile.load(FIX .. "jf_equiv.lua"))
      assert.equal("jf_equiv.lua:5", spec.by_name.fetch.where)
      assert.equal("jf_equiv.lua:8", spec.by_name.build.where)
      assert.equal("jf_equiv.lua:14", spec.by_name.db.where)
      assert.equal("jf_equiv.lua:31", spec.by_name.worker.where)
    end)

    it("makes paths absolute from a relative file name", function()
      local spec = assert(jobfile.load("./spec/../spec/fixtures/jf_equiv.lua"))
      assert.equal(FIXDIR .. "/jf_equiv.lua", spec.file)
      assert.equal(FIXDIR .. "/src", spec.by_name.build.dir)
    end)

    it("fills every default of a job", function()
      local spec = assert(load_lua('job "x" { "true" }\nservice "s" { "sleep", 9 }\n'))
      assert.same({
        name = "x", kind = "job", where = "jobs.lua:1", argv = { "true" },
        needs = {}, success_codes = { [0] = true }, dir = TMP, env = {},
        stdin = "null", stdout = "prefix", stderr = "prefix",
        kill_signal = "TERM", retries = 0, retry_delay = 0, restart = "no",
        backoff = { min = 0.5, max = 30, factor = 2 },
        max_restarts = { count = 5, within = 10 }, instances = 1,
      }, spec.by_name.x)
      local s = spec.by_name.s
      assert.equal("service", s.kind)
      assert.equal("on-failure", s.restart)
      assert.same({ "sleep", "9" }, s.argv)
      assert.same({ keep_going = false, exit_on_failure = false, executor = "local" },
        spec.settings)
    end)
  end)

  describe("Lua job files", function()
    it("see the normal globals through the environment but do not write them", function()
      local spec = assert(load_lua([[
        for i = 1, 3 do
          job("w" .. i) { "echo", tostring(i), dir = os.getenv("HOME") and "." or "." }
        end
        leaked_global = true
        job "up" { cmd = string.upper("echo hi") }
      ]]))
      assert.equal(4, #spec.jobs)
      assert.same({ "echo", "2" }, spec.by_name.w2.argv)
      assert.equal("ECHO HI", spec.by_name.up.cmd)
      assert.is_nil(rawget(_G, "leaked_global"))
    end)

    it("take a shell string in cmd and an argv list as the array part or cmd", function()
      assert.equal("make test", one('cmd = "make test"').cmd)
      assert.is_nil(one('cmd = "make test"').argv)
      assert.same({ "make", "-j", "2" }, one('"make", "-j", 2').argv)
      assert.same({ "make", "test" }, one('cmd = { "make", "test" }').argv)
      assert.is_nil(one('cmd = { "make", "test" }').cmd)
    end)

    it("accept job(name, table) and a shebang line", function()
      local spec = assert(load_lua('#!/usr/bin/env lrun\njob("a", { "true" })\n'))
      assert.equal("jobs.lua:2", spec.by_name.a.where)
    end)

    it("define policies, curried or not, and jobs may name them", function()
      local spec = assert(load_lua([[
        policy("crash_only", function(ev) return nil end)
        policy "twice" (function(ev) return "retry" end)
        job "a" { "true", policy = "crash_only" }
        job "b" { "true", policy = "twice" }
        job "c" { "true", policy = "always" }
      ]]))
      assert.is_function(spec.policies.crash_only)
      assert.equal("retry", spec.policies.twice())
      assert.equal("crash_only", spec.by_name.a.policy)
      assert.equal("always", spec.by_name.c.policy)
      assert.is_nil(spec.policies.always)
    end)

    it("keep on_exit and ready functions; a plain function is {fn = f}", function()
      local spec = assert(load_lua([[
        local function probe() return true end
        job "a" { "true", on_exit = function() return "done" end, ready = probe }
        job "b" { "true", ready = { fn = probe } }
      ]]))
      assert.equal("done", spec.by_name.a.on_exit())
      assert.is_function(spec.by_name.a.ready.fn)
      assert.equal(spec.by_name.a.ready.fn, spec.by_name.b.ready.fn)
    end)

    it("may return a table: map form sorted by name, array form in order", function()
      local spec = assert(load_lua([[
        return {
          settings = { jobs = 2 },
          jobs = { zeta = { "true" }, alpha = { "true" } },
          services = { { name = "svc", "sleep", "9" }, { name = "svc2", "sleep", "9" } },
          policies = { p = function() end },
        }
      ]]))
      local names = {}
      for i, job in ipairs(spec.jobs) do names[i] = job.name .. ":" .. job.kind end
      assert.same({ "alpha:job", "zeta:job", "svc:service", "svc2:service" }, names)
      assert.equal(2, spec.settings.jobs)
      assert.is_function(spec.policies.p)
      assert.equal("jobs.lua", spec.by_name.alpha.where)
    end)

    it("make a job a service with service = true", function()
      local spec = assert(load_lua('job "a" { "true", service = true }\n'))
      assert.equal("service", spec.by_name.a.kind)
      assert.equal("on-failure", spec.by_name.a.restart)
    end)
  end)

  describe("YAML job files", function()
    it("validate to the same spec as the Lua forms of the same jobs", function()
      local lua_spec = assert(jobfile.load(FIX .. "jf_equiv.lua"))
      local table_spec = assert(jobfile.load(FIX .. "jf_equiv_table.lua"))
      local yaml_spec = assert(jobfile.load(FIX .. "jf_equiv.yaml"))
      assert.equal("yaml", yaml_spec.format)
      assert.equal(FIXDIR .. "/jf_equiv.yaml", yaml_spec.file)
      assert.same(comparable(lua_spec), comparable(yaml_spec))
      assert.same(comparable(lua_spec), comparable(table_spec))
    end)

    it("record the line of each job definition", function()
      local spec = assert(jobfile.load(FIX .. "jf_equiv.yaml"))
      assert.equal("jf_equiv.yaml:9", spec.by_name.fetch.where)
      assert.equal("jf_equiv.yaml:13", spec.by_name.build.where)
      assert.equal("jf_equiv.yaml:52", spec.by_name.worker.where)
    end)

    it("keep the document order of a map of jobs", function()
      local spec = assert(load_yaml("jobs:\n  zz: {cmd: 'true'}\n  aa: {cmd: 'true'}\n"))
      assert.equal("zz", spec.jobs[1].name)
      assert.equal("aa", spec.jobs[2].name)
    end)

    it("take a list of jobs with names", function()
      local spec = assert(load_yaml("jobs:\n  - name: a\n    cmd: 'true'\n  - name: b\n    cmd: x\n"))
      assert.equal("jobs.yaml:2", spec.by_name.a.where)
      assert.equal("jobs.yaml:4", spec.by_name.b.where)
    end)

    it("name the line of the key at fault", function()
      assert.equal([[jobs.yaml:4: job "build": unknown key 'neds' (did you mean 'needs'?)]],
        err_yaml("jobs:\n  build:\n    cmd: make\n    neds: fetch\n"))
      assert.equal([[jobs.yaml:4: job "b": key 'timeout' must be a number, got string]],
        err_yaml("jobs:\n  b:\n    cmd: make\n    timeout: soon\n"))
    end)

    it("name the line of settings keys and of a nested key's parent", function()
      assert.equal([[jobs.yaml:3: settings: unknown key 'jbos' (did you mean 'jobs'?)]],
        err_yaml("settings:\n  keep_going: true\n  jbos: 2\njobs:\n  a: {cmd: x}\n"))
      assert.equal([[jobs.yaml:5: job "a": unknown key 'tpc' in 'ready' (did you mean 'tcp'?)]],
        err_yaml("jobs:\n  a:\n    cmd: x\n\n    ready: {tpc: 1}\n"))
      assert.equal([[jobs.yaml:4: service "db": needs unknown job "nope"]],
        err_yaml("jobs:\n  a: {cmd: x}\nservices:\n  db: {cmd: x, needs: nope}\n"))
    end)

    it("report syntax errors with the line", function()
      assert.equal("jobs.yaml:3: mapping values are not allowed in this context",
        err_yaml("jobs:\n  a: {cmd: x}\n  b: c: d\n"))
      assert.matches("^jobs%.yaml:4: did not find expected ',' or ']'",
        err_yaml("jobs:\n  a: {cmd: x}\n  b: [c\n"))
    end)

    it("report a control character with its line, bad UTF-8 without libyaml's offset", function()
      assert.equal("jobs.yaml:3: control characters are not allowed",
        err_yaml('jobs:\n  a:\n    cmd: "\1"\n'))
      assert.equal("jobs.yaml:1: invalid leading UTF-8 octet", err_yaml("jobs:\n  a: \255\n"))
    end)

    it("reject a document that is not a mapping", function()
      assert.matches("^jobs%.yaml:1: the document must be a mapping", err_yaml("- a\n- b\n"))
    end)

    it("name policies only; defining them is a Lua thing", function()
      assert.matches("^jobs%.yaml:1: policies can be defined only in a Lua job file",
        err_yaml("policies:\n  p: x\njobs:\n  a: {cmd: x}\n"))
      assert.equal([[jobs.yaml:2: job "a": unknown policy 'crash']],
        err_yaml("jobs:\n  a: {cmd: x, policy: crash}\n"))
    end)

    it("load examples/pipeline.yaml, whose jobs share an env through an anchor", function()
      local spec = assert(jobfile.load("examples/pipeline.yaml"))
      assert.equal("yaml", spec.format)
      assert.equal(2, spec.settings.jobs)
      assert.same({ WORK = "/tmp/lrun-pipeline" }, spec.by_name.generate.env)
      assert.same(spec.by_name.generate.env, spec.by_name.sum.env)
      assert.same({ { name = "check", cond = "success" }, { name = "flaky", cond = "done" } },
        spec.by_name.report.needs)
      assert.equal("pipeline.yaml:16", spec.by_name.generate.where)
    end)

    it("treat an empty value as absent", function()
      local spec = assert(load_yaml("jobs:\n  a:\n    cmd: x\n    needs:\n    timeout:\n"))
      assert.same({}, spec.by_name.a.needs)
      assert.is_nil(spec.by_name.a.timeout)
    end)
  end)

  describe("job keys", function()
    it("needs: a name, a list, keyed conditions; plain = success (job) / ready (service)", function()
      local spec = assert(load_lua([[
        job "a" { "true" }
        service "s" { "true" }
        job "one" { "true", needs = "a" }
        job "list" { "true", needs = { "a", "s" } }
        job "keyed" { "true", needs = { "a", s = "started" } }
        job "pairs" { "true", needs = { { a = "done" }, { s = "failure" } } }
      ]]))
      local b = spec.by_name
      assert.same({ { name = "a", cond = "success" } }, b.one.needs)
      assert.same({ { name = "a", cond = "success" }, { name = "s", cond = "ready" } }, b.list.needs)
      assert.same({ { name = "a", cond = "success" }, { name = "s", cond = "started" } }, b.keyed.needs)
      assert.same({ { name = "a", cond = "done" }, { name = "s", cond = "failure" } }, b.pairs.needs)
    end)

    it("needs: keyed entries come after the list, sorted by name", function()
      local spec = assert(load_lua([[
        job "a" { "true" } job "b" { "true" } job "c" { "true" }
        job "x" { "true", needs = { "c", b = "done", a = "done" } }
      ]]))
      local names = {}
      for i, n in ipairs(spec.by_name.x.needs) do names[i] = n.name end
      assert.same({ "c", "a", "b" }, names)
    end)

    it("success_codes: a set from a list, or one code", function()
      assert.same({ [0] = true, [3] = true }, one('"true", success_codes = { 0, 3 }').success_codes)
      assert.same({ [1] = true }, one('"true", success_codes = 1').success_codes)
      assert.matches("key 'success_codes' must be at most 255, got 256",
        one_err('"true", success_codes = { 256 }'), 1, true)
      assert.matches("key 'success_codes' must not be empty", one_err('"true", success_codes = {}'), 1, true)
    end)

    it("dir: relative to the job file, absolute kept, cleaned", function()
      assert.equal(TMP .. "/src", one('"true", dir = "src"').dir)
      assert.equal("/opt/app", one('"true", dir = "/opt/x/../app/"').dir)
      assert.equal(TMP, one('"true"').dir)
    end)

    it("env: values become strings; env_file is read and merged under env", function()
      local spec = assert(jobfile.load(FIX .. "jf_equiv.lua"))
      local build = spec.by_name.build
      assert.equal(FIXDIR .. "/jf_equiv.env", build.env_file)
      assert.same({ CC = "gcc", JOBS = "2", TOKEN = "abc", QUOTED = "hello world",
        SINGLE = "a b", EMPTY = "" }, build.env)
      assert.same({ N = "1.5" }, one('"true", env = { N = 1.5 }').env)
      assert.matches("env FLAG must be a string or a number, got boolean",
        one_err('"true", env = { FLAG = true }'), 1, true)
    end)

    it("env_file: a missing file or a bad line is an error", function()
      assert.matches([[^jobs%.lua:1: job "x": cannot read env_file .*nope%.env: No such file]],
        one_err('"true", env_file = "nope.env"'))
      write("bad.env", "A=1\nthis is not it\n")
      assert.matches([[env_file bad.env:2: expected KEY=VALUE, got "this is not it"]],
        one_err('"true", env_file = "bad.env"'), 1, true)
    end)

    it("stdin, stdout, stderr: reserved words or paths made absolute", function()
      local j = one('"true", stdin = "in.txt", stdout = "inherit", stderr = "logs/err"')
      assert.equal(TMP .. "/in.txt", j.stdin)
      assert.equal("inherit", j.stdout)
      assert.equal(TMP .. "/logs/err", j.stderr)
      assert.equal("null", one('"true", stdout = "null"').stdout)
      assert.equal(TMP .. "/prefix", one('"true", stdin = "prefix"').stdin)
      assert.matches("key 'stdout' must not be empty", one_err('"true", stdout = ""'), 1, true)
    end)

    it("kill_signal: 15, 'term', 'SIGTERM' all mean TERM", function()
      assert.equal("TERM", one('"true", kill_signal = 15').kill_signal)
      assert.equal("TERM", one('"true", kill_signal = "term"').kill_signal)
      assert.equal("TERM", one('"true", kill_signal = "SIGTERM"').kill_signal)
      assert.equal("KILL", one('"true", kill_signal = "sigkill"').kill_signal)
      assert.equal("INT", one('"true", kill_signal = "2"').kill_signal)
      assert.equal([[jobs.lua:1: job "x": key 'kill_signal' must be a signal name or number,]] ..
        [[ got "TREM" (did you mean 'TERM'?)]], one_err('"true", kill_signal = "TREM"'))
      assert.matches("got 99", one_err('"true", kill_signal = 99'), 1, true)
    end)

    it("restart, backoff and max_restarts take defaults and partial tables", function()
      local j = one('"true", restart = "always", backoff = { min = 1 }, max_restarts = { within = 60 }')
      assert.equal("always", j.restart)
      assert.same({ min = 1, max = 30, factor = 2 }, j.backoff)
      assert.same({ count = 5, within = 60 }, j.max_restarts)
      assert.matches([[key 'restart' must be one of no, on%-failure, always, got "on_failure"]] ..
        [[ %(did you mean 'on%-failure'%?%)]], one_err('"true", restart = "on_failure"'))
      assert.matches("unknown key 'fator' in 'backoff' (did you mean 'factor'?)",
        one_err('"true", backoff = { fator = 3 }'), 1, true)
      assert.matches("key 'backoff.factor' must be at least 1, got 0.5",
        one_err('"true", backoff = { factor = 0.5 }'), 1, true)
      assert.matches("key 'backoff.max' (1) is less than 'backoff.min' (2)",
        one_err('"true", backoff = { min = 2, max = 1 }'), 1, true)
      assert.matches("key 'max_restarts.count' must be an integer, got 1.5",
        one_err('"true", max_restarts = { count = 1.5 }'), 1, true)
    end)

    it("ready: each probe kind", function()
      assert.same({ tcp = 80, host = "127.0.0.1" }, one('"true", ready = { tcp = 80 }').ready)
      assert.same({ tcp = 80, host = "::1" }, one('"true", ready = { tcp = 80, host = "::1" }').ready)
      assert.same({ file = TMP .. "/up" }, one('"true", ready = { file = "up" }').ready)
      assert.same({ log = "port %d+" }, one('"true", ready = { log = "port %d+" }').ready)
      assert.same({ cmd = { "pg_isready" } }, one('"true", ready = { cmd = { "pg_isready" } }').ready)
      assert.same({ cmd = "curl -sf x" }, one('"true", ready = { cmd = "curl -sf x" }').ready)
      assert.same({ notify = "systemd" }, one('"true", ready = { notify = "systemd" }').ready)
      assert.equal(2, one('"true", ready = { tcp = 1 }, ready_timeout = 2').ready_timeout)
    end)

    it("ready: exactly one kind, valid values", function()
      assert.matches("key 'ready' needs exactly one of tcp, file, log, cmd, fn, notify",
        one_err('"true", ready = { tcp = 1, file = "x" }'), 1, true)
      assert.matches("key 'ready.tcp' must be at most 65535, got 70000",
        one_err('"true", ready = { tcp = 70000 }'), 1, true)
      assert.matches("key 'ready.log' is not a valid Lua pattern",
        one_err('"true", ready = { log = "%" }'), 1, true)
      assert.matches("key 'ready.host' goes only with 'ready.tcp'",
        one_err('"true", ready = { file = "x", host = "h" }'), 1, true)
      assert.matches("unknown key 'tpc' in 'ready' (did you mean 'tcp'?)",
        one_err('"true", ready = { tpc = 1 }'), 1, true)
      assert.matches("key 'ready' must be a table or a function, got number",
        one_err('"true", ready = 80'), 1, true)
    end)

    it("instances, user, group, umask, limits", function()
      local j = one('"true", instances = 3, user = "www", group = 33, umask = "027",' ..
        ' limits = { nofile = { 1024, 4096 }, core = 0, stack = "unlimited" }')
      assert.equal(3, j.instances)
      assert.equal("www", j.user)
      assert.equal(33, j.group)
      assert.equal(23, j.umask)
      assert.same({ nofile = { 1024, 4096 }, core = 0, stack = "unlimited" }, j.limits)
      assert.equal(18, one('"true", umask = 18').umask)
      assert.matches("key 'umask' must be an octal string", one_err('"true", umask = "099"'), 1, true)
      assert.matches("unknown key 'nofiles' in 'limits' (did you mean 'nofile'?)",
        one_err('"true", limits = { nofiles = 1 }'), 1, true)
      assert.matches("limit 'core' must be", one_err('"true", limits = { core = -1 }'), 1, true)
      assert.matches("key 'user' must be a name or a number >= 0, got -1",
        one_err('"true", user = -1'), 1, true)
    end)

    it("on_exit and policy exclude each other", function()
      assert.matches("give on_exit or policy, not both",
        one_err('"true", on_exit = function() end, policy = "always"'), 1, true)
    end)
  end)

  describe("errors", function()
    it("Lua syntax errors name file and line", function()
      assert.matches("^jobs%.lua:3: ", err_lua('job "a" { "true" }\n\njob "b" { "true" = }\n'))
      local spec, msg = jobfile.load(FIX .. "jf_syntax.lua")
      assert.is_nil(spec)
      assert.matches("^jf_syntax%.lua:4: .*near 'needs'", msg)
    end)

    it("Lua runtime errors name file and line", function()
      assert.matches("^jobs%.lua:2: attempt to index a nil value",
        err_lua('job "a" { "true" }\nlocal x = nil; print(x.y)\n'))
      assert.equal("jobs.lua: boom", err_lua('error("boom", 0)\n'))
    end)

    it("a misspelt job/service call gets a suggestion", function()
      assert.matches("^jobs%.lua:1: attempt to call a nil value %(global 'jbo'%) %(did you mean 'job'%?%)$",
        err_lua('jbo "a" { "true" }\n'))
    end)

    it("an unknown key, with the exact message format", function()
      assert.equal([[jobs.lua:2: job "build": unknown key 'neds' (did you mean 'needs'?)]],
        err_lua('job "fetch" { "true" }\njob "build" { "make", neds = "fetch" }\n'))
      assert.equal([[jobs.lua:1: job "x": unknown key 'colour']], one_err('"true", colour = "red"'))
      assert.equal([[jobs.lua:1: job "x": unknown key 'tmeout' (did you mean 'timeout'?)]],
        one_err('"true", tmeout = 1'))
    end)

    it("wrong types", function()
      assert.equal([[jobs.lua:1: job "x": key 'timeout' must be a number, got string]],
        one_err('"true", timeout = "10"'))
      assert.equal([[jobs.lua:1: job "x": key 'retries' must be an integer, got 1.5]],
        one_err('"true", retries = 1.5'))
      assert.equal([[jobs.lua:1: job "x": key 'service' must be true or false, got string]],
        one_err('"true", service = "yes"'))
      assert.equal([[jobs.lua:1: job "x": key 'env' must be a table, got string]],
        one_err('"true", env = "A=1"'))
      assert.equal([[jobs.lua:1: job "x": key 'needs' must be a name or a list, got number]],
        one_err('"true", needs = 3'))
      assert.equal([[jobs.lua:1: job "x": key 'on_exit' must be a function, got string]],
        one_err('"true", on_exit = "restart"'))
      assert.equal([[jobs.lua:1: job "x": argv[2] must be a string, got table]],
        one_err('"true", {}'))
    end)

    it("negative numbers where they make no sense", function()
      assert.matches("key 'timeout' must be greater than 0, got -1", one_err('"true", timeout = -1'), 1, true)
      assert.matches("key 'timeout' must be greater than 0, got 0", one_err('"true", timeout = 0'), 1, true)
      assert.matches("key 'retries' must be at least 0, got -1", one_err('"true", retries = -1'), 1, true)
      assert.matches("key 'kill_grace' must be at least 0, got -2", one_err('"true", kill_grace = -2'), 1, true)
      assert.matches("key 'retry_delay' must be at least 0", one_err('"true", retry_delay = -0.1'), 1, true)
      assert.matches("key 'instances' must be at least 1, got 0", one_err('"true", instances = 0'), 1, true)
      assert.matches("key 'ready_timeout' must be greater than 0",
        one_err('"true", ready = { tcp = 1 }, ready_timeout = -5'), 1, true)
      assert.matches("key 'timeout' must be a number, got nan", one_err('"true", timeout = 0/0'), 1, true)
    end)

    it("duplicate names, jobs and services sharing one namespace", function()
      assert.equal([[jobs.lua:2: job "a": duplicate name (first defined at jobs.lua:1)]],
        err_lua('job "a" { "true" }\njob "a" { "false" }\n'))
      assert.equal([[jobs.lua:2: service "a": duplicate name (first defined at jobs.lua:1)]],
        err_lua('job "a" { "true" }\nservice "a" { "false" }\n'))
    end)

    it("unknown needs names", function()
      assert.equal([[jobs.lua:2: job "b": needs unknown job "bulid" (did you mean 'build'?)]],
        err_lua('job "build" { "true" }\njob "b" { "true", needs = "bulid" }\n'))
      assert.equal([[jobs.lua:1: job "b": needs unknown job "zzz"]],
        err_lua('job "b" { "true", needs = { "zzz" } }\n'))
    end)

    it("a need condition that is not one of the five", function()
      assert.equal([[jobs.lua:2: job "b": need "a": unknown condition "redy" (did you mean 'ready'?);]] ..
        [[ use one of success, done, started, ready, failure]],
        err_lua('job "a" { "true" }\njob "b" { "true", needs = { a = "redy" } }\n'))
      assert.matches([[need "a": unknown condition true]],
        err_lua('job "a" { "true" }\njob "b" { "true", needs = { a = true } }\n'), 1, true)
      assert.matches([[needs "a" more than once]],
        err_lua('job "a" { "true" }\njob "b" { "true", needs = { "a", a = "done" } }\n'), 1, true)
      -- a need with a bad condition is still named once: naming it again is an error too
      local _, _, errs = load_lua('job "a" { "true" }\n' ..
        'job "b" { "true", needs = { { a = "bogus" }, "a" } }\n')
      assert.equal(2, #errs)
      assert.matches([[need "a": unknown condition "bogus"]], errs[1], 1, true)
      assert.matches([[needs "a" more than once]], errs[2], 1, true)
    end)

    it("cycles, printed as the path", function()
      local _, msg = jobfile.load(FIX .. "jf_cycle.lua")
      assert.equal("jf_cycle.lua:3: dependency cycle: a -> b -> c -> a", msg)
      assert.equal("jobs.lua:1: dependency cycle: self -> self",
        err_lua('job "self" { "true", needs = "self" }\n'))
    end)

    it("an empty command", function()
      assert.equal([[jobs.lua:1: job "x": empty command]], one_err('cmd = ""'))
      assert.equal([[jobs.lua:1: job "x": empty command]], one_err('cmd = "   "'))
      assert.equal([[jobs.lua:1: job "x": empty command]], one_err('cmd = {}'))
      assert.equal([[jobs.lua:1: job "x": empty command]], one_err('""'))
      assert.equal([[jobs.lua:1: job "x": no command: give an argv list or cmd = "..."]],
        one_err('timeout = 1'))
      assert.equal([[jobs.lua:1: job "x": give an argv list or cmd, not both]],
        one_err('"make", cmd = "make"'))
    end)

    it("a job call without its table", function()
      assert.equal([[jobs.lua:2: job "a" has no definition (write job "a" { ... })]],
        err_lua('job "b" { "true" }\njob "a"\n'))
      assert.equal([[jobs.lua:1: job "a" needs a table, got string (write job "a" { ... })]],
        err_lua('job "a" "make"\n'))
      assert.matches([[^jobs%.lua:1: job name must be a string, got table]],
        err_lua('job { "make" }\n'))
      -- every call left without its table is named, in the order of the calls
      local _, _, errs = load_lua('job "a"\njob "b" { "true" }\nservice "c"\n')
      assert.same({ [[jobs.lua:1: job "a" has no definition (write job "a" { ... })]],
        [[jobs.lua:3: service "c" has no definition (write service "c" { ... })]] }, errs)
    end)

    it("a job call whose table comes later, and one called twice", function()
      local spec = assert(load_lua('local a = job "a"\njob "b" { "true" }\na { "false" }\n'))
      assert.same({ "b", "a" }, { spec.jobs[1].name, spec.jobs[2].name })
      assert.equal("jobs.lua:1", spec.by_name.a.where)
      assert.same({ "false" }, spec.by_name.a.argv)
      assert.equal([[jobs.lua:1: job "a": duplicate name (first defined at jobs.lua:1)]],
        err_lua('local a = job "a"\na { "true" }\na { "true" }\n'))
    end)

    it("a need named twice in a long list", function()
      local names = {}
      for i = 1, 12 do names[i] = ("%q"):format("n" .. i) end
      local defs = {}
      for i = 1, 12 do defs[i] = ('job "n%d" { "true" }'):format(i) end
      assert.matches([[job "x": needs "n3" more than once]], err_lua(table.concat(defs, "\n") ..
        '\njob "x" { "true", needs = { ' .. table.concat(names, ", ") .. ', "n3" } }\n'), 1, true)
      assert.matches([[job "x": needs "n3" more than once]], err_lua(table.concat(defs, "\n") ..
        '\njob "x" { "true", needs = { ' .. table.concat(names, ", ") .. ', n3 = "done" } }\n'),
        1, true)
    end)

    it("unknown settings keys and bad settings", function()
      assert.equal([[jobs.lua:1: settings: unknown key 'jbos' (did you mean 'jobs'?)]],
        err_lua('settings { jbos = 2 }\njob "a" { "true" }\n'))
      assert.equal([[jobs.lua:1: settings: key 'jobs' must be at least 1, got 0]],
        err_lua('settings { jobs = 0 }\njob "a" { "true" }\n'))
      assert.equal([[jobs.lua:1: settings: key 'keep_going' must be true or false, got number]],
        err_lua('settings { keep_going = 1 }\njob "a" { "true" }\n'))
      assert.equal([[jobs.lua:1: settings: key 'grace' must be at least 0, got -1]],
        err_lua('settings { grace = -1 }\njob "a" { "true" }\n'))
    end)

    it("settings: all keys, log_dir made absolute", function()
      local spec = assert(load_lua('settings { jobs = 2, keep_going = true, exit_on_failure = true,' ..
        ' grace = 1.5, log_dir = "logs" }\njob "a" { "true" }\n'))
      assert.same({ jobs = 2, keep_going = true, exit_on_failure = true, grace = 1.5,
        log_dir = TMP .. "/logs", executor = "local" }, spec.settings)
    end)

    it("unknown policy names", function()
      assert.equal([[jobs.lua:2: job "a": unknown policy 'crash_onyl' (did you mean 'crash_only'?)]],
        err_lua('policy("crash_only", function() end)\njob "a" { "true", policy = "crash_onyl" }\n'))
      assert.equal([[jobs.lua:1: job "a": unknown policy 'on_failure' (did you mean 'on-failure'?)]],
        err_lua('job "a" { "true", policy = "on_failure" }\n'))
    end)

    it("bad policy definitions", function()
      assert.equal([[jobs.lua:1: policy "always": the name is taken by a built-in policy]],
        err_lua('policy("always", function() end)\njob "a" { "true" }\n'))
      assert.equal([[jobs.lua:1: policy "p": must be a function, got string]],
        err_lua('policy("p", "restart")\njob "a" { "true" }\n'))
      assert.equal([[jobs.lua:2: policy "p": defined twice (first at jobs.lua:1)]],
        err_lua('policy("p", print)\npolicy("p", print)\njob "a" { "true" }\n'))
    end)

    it("names: non-empty, no whitespace, no '|'; '.' is fine", function()
      assert.equal([[jobs.lua:1: job "": name must not be empty]], err_lua('job "" { "true" }\n'))
      assert.equal([[jobs.lua:1: job "a b": name must not contain whitespace or '|']],
        err_lua('job "a b" { "true" }\n'))
      assert.equal([[jobs.lua:1: job "a|b": name must not contain whitespace or '|']],
        err_lua('job "a|b" { "true" }\n'))
      assert.equal([[jobs.lua:1: job "a\tb": name must not contain whitespace or '|']],
        err_lua('job "a\\tb" { "true" }\n'))
      assert.truthy(load_lua('job "build.debug" { "true" }\n'))
      assert.matches([[service #1 in 'services' has no name]],
        err_lua('return { services = { { "true" } } }\n'), 1, true)
      assert.matches([[job name 5 must be a string]],
        err_lua('return { jobs = { [5] = { "true" } } }\n'), 1, true)
    end)

    it("stay on one line whatever a name or key holds", function()
      local msg = err_lua('job "x" { "true", ["a\\nb"] = 1 }\njob "y\\n" { "true" }\n')
      assert.equal([[jobs.lua:1: job "x": unknown key "a\nb"]], msg)
      local _, errs = err_lua('job "y\\n" { "true" }\n')
      assert.equal([[jobs.lua:1: job "y\n": name must not contain whitespace or '|']], errs[1])
    end)

    it("the returned table: unknown keys and wrong shapes", function()
      assert.equal([[jobs.lua: unknown top-level key 'job' (did you mean 'jobs'?)]],
        err_lua('return { job = {} }\n'))
      assert.equal([[jobs.lua: unknown top-level key 1]], err_lua('return { { "true" } }\n'))
      assert.equal([[jobs.lua: the file returned a string; return a table or nothing]],
        err_lua('return "jobs"\n'))
      assert.equal([[jobs.lua: job "a": must be a table, got string]],
        err_lua('return { jobs = { a = "make" } }\n'))
      assert.equal([[jobs.lua: job "a": key 'name' is "b" but the job is named "a"]],
        err_lua('return { jobs = { a = { "true", name = "b" } } }\n'))
    end)

    it("a file without jobs", function()
      assert.equal("jobs.lua: no jobs defined", err_lua("-- nothing yet\n"))
      assert.equal("jobs.yaml: no jobs defined", err_yaml("settings: {jobs: 2}\n"))
    end)

    it("gives the first error as the message and every error in the list", function()
      local msg, errs = err_lua([[
job "a" { "true", tmeout = 1 }
job "b" { "true", retries = -1 }
job "c" { "true", needs = "nope" }
]])
      assert.equal([[jobs.lua:1: job "a": unknown key 'tmeout' (did you mean 'timeout'?)]], msg)
      assert.is_nil(msg:find("\n"))
      assert.same({
        [[jobs.lua:1: job "a": unknown key 'tmeout' (did you mean 'timeout'?)]],
        [[jobs.lua:2: job "b": key 'retries' must be at least 0, got -1]],
        [[jobs.lua:3: job "c": needs unknown job "nope"]],
      }, errs)
    end)

    it("a job with errors does not make its dependents' needs unknown", function()
      local _, errs = err_lua('job "a" { "true", timeout = "x" }\njob "b" { "true", needs = "a" }\n')
      assert.equal(1, #errs)
    end)
  end)
  describe("executor and slurm", function()
    it("take executor and slurm at job and settings level, the job's keys over the settings'", function()
      local spec = assert(load_lua([[
        settings { executor = "slurm", slurm = { partition = "gpu", time = 30, account = "lab",
          extra = { "--exclusive" } } }
        job "a" { "true", slurm = { time = "1:00:00", cpus = 4, gpus = 0, mem = "8G" } }
        job "b" { "true", executor = "local" }
        job "c" { "true", slurm = { mem = 2048, gpus = "a100:2", qos = "high", constraint = "avx2" } }
      ]]))
      assert.equal("slurm", spec.settings.executor)
      assert.same({ partition = "gpu", time = 30, account = "lab", extra = { "--exclusive" } },
        spec.settings.slurm)
      local a, b, c = spec.by_name.a, spec.by_name.b, spec.by_name.c
      assert.is_nil(a.executor)   -- the run's executor decides (settings, or --executor)
      assert.equal("slurm", require("lrun.slurm").executor_of(spec, a))
      assert.same({ partition = "gpu", time = "1:00:00", account = "lab", cpus = 4, gpus = 0,
        mem = "8G", extra = { "--exclusive" } }, a.slurm)
      assert.equal("local", b.executor)
      assert.same(spec.settings.slurm, b.slurm)
      assert.same({ partition = "gpu", time = 30, account = "lab", mem = 2048, gpus = "a100:2",
        qos = "high", constraint = "avx2", extra = { "--exclusive" } }, c.slurm)
      local pspec = assert(load_lua('job "x" { "true" }\n'))
      local plain = pspec.by_name.x
      assert.is_nil(plain.executor)
      assert.equal("local", require("lrun.slurm").executor_of(pspec, plain))
      assert.is_nil(plain.slurm)
    end)

    it("reject unknown slurm keys with a suggestion, and bad values", function()
      assert.equal([[jobs.lua:1: job "x": unknown key 'partiton' in 'slurm' (did you mean 'partition'?)]],
        one_err('"true", slurm = { partiton = "gpu" }'))
      assert.equal([[jobs.lua:1: settings: unknown key 'cpu' in 'slurm' (did you mean 'cpus'?)]],
        err_lua('settings { slurm = { cpu = 2 } }\njob "a" { "true" }\n'))
      assert.equal([[jobs.lua:1: job "x": key 'executor' must be one of local, slurm, got "slrum"]] ..
        [[ (did you mean 'slurm'?)]], one_err('"true", executor = "slrum"'))
      assert.equal([[jobs.lua:1: settings: key 'executor' must be a string, got number]],
        err_lua('settings { executor = 1 }\njob "a" { "true" }\n'))
      local cases = {
        { "slurm = 1", "key 'slurm' must be a table, got number" },
        { 'slurm = { partition = "" }', "key 'slurm.partition' must not be empty" },
        { "slurm = { partition = 3 }", "key 'slurm.partition' must be a string, got number" },
        { "slurm = { time = 0 }", "key 'slurm.time' must be greater than 0, got 0" },
        { "slurm = { time = true }", "key 'slurm.time' must be a string or a number of seconds, got boolean" },
        { "slurm = { mem = 1.5 }", "key 'slurm.mem' must be an integer, got 1.5" },
        { "slurm = { mem = 0 }", "key 'slurm.mem' must be at least 1, got 0" },
        { "slurm = { cpus = 0 }", "key 'slurm.cpus' must be at least 1, got 0" },
        { 'slurm = { cpus = "4" }', "key 'slurm.cpus' must be an integer, got string" },
        { "slurm = { gpus = -1 }", "key 'slurm.gpus' must be at least 0, got -1" },
        { "slurm = { account = {} }", "key 'slurm.account' must be a string, got table" },
        { 'slurm = { qos = "" }', "key 'slurm.qos' must not be empty" },
        { "slurm = { constraint = false }", "key 'slurm.constraint' must be a string, got boolean" },
        { 'slurm = { extra = "--x" }', "key 'slurm.extra' must be a list of strings, got string" },
        { "slurm = { extra = { 1 } }", "slurm.extra[1] must be a string, got number" },
        { "slurm = { extra = { x = 1 } }", "key 'slurm.extra' must be a plain list, has key [\"x\"]" },
      }
      for _, case in ipairs(cases) do
        assert.equal('jobs.lua:1: job "x": ' .. case[2], one_err('"true", ' .. case[1]))
      end
    end)

    it("name the YAML line of a bad slurm key", function()
      assert.equal([[jobs.yaml:4: job "a": key 'slurm.cpus' must be at least 1, got 0]],
        err_yaml("jobs:\n  a:\n    cmd: \"true\"\n    slurm: { cpus: 0 }\n"))
    end)
  end)

  describe("names owned by the core", function()
    it("take every rlimit of core.rlimits and nothing else", function()
      for name, n in pairs(core.rlimits) do
        if type(name) == "string" then
          assert.same({ [name] = 1 }, one('"true", limits = { ' .. name .. ' = 1 }').limits, n)
        end
      end
      assert.equal([[jobs.lua:1: job "x": unknown key 'rttime' in 'limits']],
        one_err('"true", limits = { rttime = 5 }'))
      assert.matches("unexpected key [1]", one_err('"true", limits = { 5 }'), 1, true)
    end)

    it("take every signal of core.signals, by name and number", function()
      for name, n in pairs(core.signals) do
        if type(name) == "string" then
          assert.equal(name, one('"true", kill_signal = "SIG' .. name:lower() .. '"').kill_signal)
          assert.equal(name, one('"true", kill_signal = ' .. n).kill_signal)
        end
      end
      assert.equal([[jobs.lua:1: job "x": key 'kill_signal' must be a signal name or number, got 0]],
        one_err('"true", kill_signal = 0'))
      assert.matches("got \"TREM\" (did you mean 'TERM'?)", one_err('"true", kill_signal = "TREM"'), 1, true)
    end)

    it("make `lrun -n` exit 2 with an lrun: message on an rlimit the core lacks", function()
      local path = write("jobs.lua", 'job "a" { "true" }\njob "b" { "true", limits = { rttime = 5 } }\n')
      local r = assert(lp.run { ROOT .. "/scripts/lrun", "-n", path, timeout = 60,
        setenv = { LPROCESS_CPATH = package.searchpath("lprocess.core", package.cpath)
          :gsub("lprocess/core%.so$", "?.so") } })
      assert.equal(2, lp.exit_code(r.status), r.stderr)
      assert.equal([[lrun: jobs.lua:2: job "b": unknown key 'rttime' in 'limits']] .. "\n", r.stderr)
    end)
  end)

  describe("hostile job files", function()
    local timeout, memory = sandbox.TIMEOUT, sandbox.MEMORY
    after_each(function() sandbox.TIMEOUT, sandbox.MEMORY = timeout, memory end)

    it("make os.exit a job-file error with file:line, at load time", function()
      assert.equal("jobs.lua:2: os.exit is not allowed in a job file",
        err_lua('job "a" { "true" }\nos.exit(0)\n'))
      assert.equal("jobs.lua:1: os.exit is not allowed in a job file",
        err_lua('_G.os.exit(true)\n'))
      assert.equal("jobs.lua:1: os.exit is not allowed in a job file",
        err_lua('require("os").exit(1)\n'))
      assert.equal("jobs.lua: x:1: os.exit is not allowed in a job file",
        err_lua('load("os.exit(1)", "=x")()\n'))
    end)

    it("make os.exit in a function of the file raise when lrun calls it later", function()
      local spec = assert(load_lua('job "a" { "true", on_exit = function() os.exit(0) end }\n'))
      local ok, err = pcall(spec.by_name.a.on_exit)
      assert.is_false(ok)
      assert.matches("^jobs%.lua:1: os.exit is not allowed in a job file", err)
    end)

    it("report a policy's os.exit as a policy error: the job fails, the others finish, exit 1", function()
      local r = assert(lp.run { ROOT .. "/scripts/lrun", FIX .. "jf_exit_policy.lua", timeout = 60,
        setenv = { LPROCESS_CPATH = package.searchpath("lprocess.core", package.cpath)
          :gsub("lprocess/core%.so$", "?.so") } })
      assert.equal(1, lp.exit_code(r.status), r.stderr)
      assert.matches("lrun: job quitter: policy: on_exit of quitter (jf_exit_policy.lua:4) failed: " ..
        "jf_exit_policy.lua:4: os.exit is not allowed in a job file", r.stderr, 1, true)
      assert.matches("other   | other finished", r.stdout, 1, true)
      assert.matches("\nother +ok ", r.stderr)
    end)

    it("refuse finalizers, and error objects of any type", function()
      assert.equal("jobs.lua:1: __gc is not allowed in a job file (a finalizer runs outside lrun's guard)",
        err_lua('setmetatable({}, { __gc = function() end })\n'))
      assert.equal("jobs.lua: (error object is a table value)",
        err_lua('error(setmetatable({}, { __tostring = function() os.exit(1) end }))\n'))
      assert.equal("jobs.lua: (error object is a nil value)", err_lua('error()\n'))
      assert.equal("jobs.lua: 42", err_lua('error(42)\n'))
    end)

    it("name the file's line when a require fails, never lrun's own", function()
      assert.equal("jobs.lua:2: module 'no.such.module' not found:",
        err_lua('job "a" { "true" }\nrequire "no.such.module"\n'))
    end)

    it("stop a file that loops, even one that swallows errors, within the deadline", function()
      sandbox.TIMEOUT = 0.2
      assert.equal("jobs.lua: loading ran longer than 0.2 s (stopped at jobs.lua:2)",
        err_lua('job "a" { "true" }\nwhile true do end\n'))
      assert.matches("^jobs%.lua: loading ran longer than 0%.2 s %(stopped at jobs%.lua:1%)$",
        err_lua('while true do pcall(function() while true do end end) end\n'))
      assert.matches("^jobs%.lua: loading ran longer than 0%.2 s",
        err_lua('coroutine.wrap(function() while true do end end)()\n'))
      assert.matches("^jobs%.lua: loading ran longer than 0%.2 s",
        err_lua('job "a" (setmetatable({ "true" }, { __index = function() while true do end end }))\n'))
    end)

    it("stop a file that eats memory, and one that yields at top level", function()
      sandbox.MEMORY = 64
      assert.matches("^jobs%.lua: loading used more than 64 MiB of memory %(stopped at jobs%.lua:1%)$",
        err_lua('local t = {} for i = 1, 1e9 do t[i] = { i } end\n'))
      assert.equal("jobs.lua: yielded outside a coroutine", err_lua('coroutine.yield()\n'))
    end)

    it("report errors raised by metamethods of the file's tables during validation", function()
      assert.equal("jobs.lua:1: no", err_lua(
        'job "a" (setmetatable({ "true" }, { __index = function() error("no") end }))\n'))
      assert.equal("jobs.lua:1: os.exit is not allowed in a job file", err_lua(
        'job "a" { "true", needs = setmetatable({}, { __len = function() os.exit(0) end }) }\n'))
      -- __index is honoured: a job may inherit its keys.
      local spec = assert(load_lua('local base = { timeout = 5 }\n' ..
        'job "a" (setmetatable({ "true" }, { __index = base }))\n'))
      assert.equal(5, spec.by_name.a.timeout)
    end)

    it("name the file, not lrun's line, for an __index loop; stop at a hole of a long list", function()
      assert.equal("jobs.lua: reading the file's tables: '__index' chain too long; possible loop",
        err_lua('local t = {} setmetatable(t, { __index = t })\n' ..
          'job "a" (setmetatable({ "true" }, { __index = t }))\n'))
      local _, errs = err_lua('job "a" { "true", needs = setmetatable({}, ' ..
        '{ __len = function() return 1 << 62 end }) }\n')
      assert.same({ 'jobs.lua:1: job "a": needs entries must be job names, got nil' }, errs)
    end)

    it("validate outside the deadline only what no code of the file can run in", function()
      local plain = { { t = { "true", needs = { "a", { b = "done" } }, env = { K = "v" } } } }
      assert.is_true(sandbox.inert(plain, "t"))
      local function with(t) return { { t = { "true", x = t } } } end
      assert.is_false(sandbox.inert(with(setmetatable({}, {})), "t"))        -- a metamethod
      assert.is_false(sandbox.inert(with({ { setmetatable({}, {}) } }), "t"))  -- at any depth
      assert.is_false(sandbox.inert(with(io.stdout), "t"))                    -- __tostring, __name
      assert.is_false(sandbox.inert({ { t = { [setmetatable({}, {})] = 1 } } }, "t"))  -- keys too
      local deep = {}
      for _ = 1, 10 do deep = { deep } end
      assert.is_false(sandbox.inert(with(deep), "t"))
      local cycle = {}
      cycle[1] = cycle
      assert.is_false(sandbox.inert(with(cycle), "t"))
      -- one table shared at every level: 100^6 paths to walk -- not inert, at once
      -- (the walk runs outside the file's deadline: it must end on its own)
      local shared = {}
      for _ = 1, 6 do
        local level = {}
        for i = 1, 100 do level[i] = shared end
        shared = level
      end
      assert.is_false(sandbox.inert(with(shared), "t"))
      assert.is_false(sandbox.inert({ { t = io.stdout } }, "t"))             -- the field itself
      assert.is_true(sandbox.inert({ { name = "x" }, { name = 3 } }, "name"))  -- not tables
      -- a standard function the file replaced (validation calls it): bounded again
      local lib = require "string"   -- as a job file reaches it
      local find = lib.find
      finally(function() lib.find = find end)
      lib.find = function(...) return find(...) end
      assert.is_false(sandbox.inert(plain, "t"))
      lib.find = find
      assert.is_true(sandbox.inert(plain, "t"))
    end)

    it("a non-table settings in a returned table is an error, not a crash", function()
      assert.equal("jobs.lua: 'settings' must be a table, got number",
        err_lua('return { settings = 5, jobs = { a = { "true" } } }\n'))
    end)
  end)
end)
