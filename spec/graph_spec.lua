-- lrun.graph: cycles, target selection, start order, DOT and the -n plan.
local graph = require "lrun.graph"

-- A spec with just what lrun.graph reads, in jobfile's validated shape.
-- mk{ { "a" }, { "b", needs = { "a", { "s", "started" } } }, { "s", kind = "service" } }
local function mk(defs)
  local spec = { jobs = {}, by_name = {} }
  for i, d in ipairs(defs) do
    local job = { name = d[1], kind = d.kind or "job", needs = {}, cmd = d.cmd,
      argv = d.argv or (not d.cmd and { "true" } or nil), instances = d.instances or 1 }
    for j, n in ipairs(d.needs or {}) do
      if type(n) == "string" then n = { n } end
      job.needs[j] = { name = n[1], cond = n[2] }
    end
    spec.jobs[i], spec.by_name[job.name] = job, job
  end
  for _, job in ipairs(spec.jobs) do
    for _, need in ipairs(job.needs) do
      local target = spec.by_name[need.name]
      need.cond = need.cond or (target and graph.default_cond(target)) or "success"
    end
  end
  return spec
end

local function sorted_set(set)
  local list = {}
  for k, v in pairs(set) do
    assert.is_true(v)
    list[#list + 1] = k
  end
  table.sort(list)
  return list
end

describe("lrun.graph", function()
  it("default_cond: ready for a service, success for a job", function()
    assert.equal("ready", graph.default_cond({ kind = "service" }))
    assert.equal("success", graph.default_cond({ kind = "job" }))
  end)

  describe("cycle", function()
    it("is nil for a graph without one", function()
      assert.is_nil(graph.cycle(mk { { "a" }, { "b", needs = { "a" } }, { "c", needs = { "a", "b" } } }))
    end)

    it("gives the path, in the needs direction, closed on its first job", function()
      local spec = mk { { "a", needs = { "b" } }, { "b", needs = { "c" } }, { "c", needs = { "a" } } }
      assert.same({ "a", "b", "c", "a" }, graph.cycle(spec))
    end)

    it("starts the path at the cycle's earliest-defined job", function()
      local spec = mk { { "x", needs = { "c" } }, { "b", needs = { "c" } }, { "c", needs = { "a" } },
        { "a", needs = { "b" } } }
      -- The search enters the cycle at c (through x), but b is defined first.
      assert.same({ "b", "c", "a", "b" }, graph.cycle(spec))
    end)

    it("finds a job that needs itself", function()
      assert.same({ "s", "s" }, graph.cycle(mk { { "ok" }, { "s", needs = { "s" } } }))
    end)

    it("ignores needs naming unknown jobs", function()
      assert.is_nil(graph.cycle(mk { { "a", needs = { "ghost" } } }))
    end)

    it("copes with a chain deeper than the call stack", function()
      local defs = { { "j1", needs = { "j20000" } } }
      for i = 2, 20000 do defs[i] = { "j" .. i, needs = { "j" .. (i - 1) } } end
      local cycle = graph.cycle(mk(defs))
      assert.equal(20001, #cycle)
      assert.same({ "j1", "j20000", "j19999" }, { cycle[1], cycle[2], cycle[3] })
      assert.equal("j1", cycle[#cycle])
    end)
  end)

  describe("select", function()
    local spec = mk { { "fetch" }, { "build", needs = { "fetch" } }, { "db", kind = "service" },
      { "test", needs = { "build", { "db", "ready" } } }, { "docs" }, { "lint", needs = { "fetch" } } }

    it("selects every job when there are no targets", function()
      local all = { "build", "db", "docs", "fetch", "lint", "test" }
      assert.same(all, sorted_set(graph.select(spec)))
      assert.same(all, sorted_set(graph.select(spec, {})))
    end)

    it("selects the targets and everything they need, transitively", function()
      assert.same({ "build", "db", "fetch", "test" }, sorted_set(graph.select(spec, { "test" })))
      assert.same({ "build", "docs", "fetch" }, sorted_set(graph.select(spec, { "build", "docs" })))
      -- Not what depends on a target.
      assert.same({ "fetch" }, sorted_set(graph.select(spec, { "fetch" })))
    end)

    it("rejects an unknown target", function()
      local sel, msg = graph.select(spec, { "build", "tset" })
      assert.is_nil(sel)
      assert.equal('unknown target "tset"', msg)
    end)
  end)

  describe("order", function()
    it("puts every job after what it needs, ties in definition order", function()
      local spec = mk { { "c" }, { "a", needs = { "c" } }, { "b" } }
      assert.same({ "c", "a", "b" }, graph.order(spec))
      spec = mk { { "z", needs = { "y" } }, { "y" }, { "x" } }
      assert.same({ "y", "z", "x" }, graph.order(spec))
    end)

    it("is Kahn's order: a job waits for all of its needs", function()
      local spec = mk { { "d", needs = { "b", "c" } }, { "c", needs = { "a" } }, { "b", needs = { "a" } },
        { "a" }, { "e" } }
      assert.same({ "a", "c", "b", "d", "e" }, graph.order(spec))
    end)

    it("orders only the selected jobs", function()
      local spec = mk { { "a" }, { "b", needs = { "a" } }, { "c", needs = { "b" } }, { "d" } }
      assert.same({ "a", "b" }, graph.order(spec, graph.select(spec, { "b" })))
      assert.same({ "a", "b", "c", "d" }, graph.order(spec, graph.select(spec)))
    end)

    it("stays right for jobs appended after an order was found (lrun ctl add)", function()
      local spec = mk { { "a" }, { "b", needs = { "a" } } }
      assert.is_nil(graph.cycle(spec))   -- in definition order: remembered
      assert.same({ "a", "b" }, graph.order(spec))
      -- appended: a job needing b, and one that a new need of an old job names first
      local more = mk { { "a" }, { "b", needs = { "a" } }, { "d", needs = { "e" } }, { "e" } }
      spec.jobs[3], spec.by_name.d = more.jobs[3], more.jobs[3]
      spec.jobs[4], spec.by_name.e = more.jobs[4], more.jobs[4]
      assert.same({ "a", "b", "e", "d" }, graph.order(spec))
      assert.same({ "a", "b" }, graph.order(spec, graph.select(spec, { "b" })))
    end)

    it("fails on a cycle", function()
      local order, msg = graph.order(mk { { "a", needs = { "b" } }, { "b", needs = { "a" } }, { "c" } })
      assert.is_nil(order)
      assert.matches("cycle", msg)
    end)
  end)

  it("dependents: every job, with the jobs that need it in definition order", function()
    local spec = mk { { "a" }, { "c", needs = { "a", "b" } }, { "b", needs = { "a" } }, { "d" } }
    assert.same({ a = { "c", "b" }, b = { "c" }, c = {}, d = {} }, graph.dependents(spec))
  end)

  describe("dot", function()
    local spec = mk { { "fetch" }, { "db", kind = "service" }, { "build", needs = { "fetch" } },
      { "it", needs = { "build", "db", { "fetch", "done" } } }, { "cleanup", needs = { { "db", "started" } } } }

    it("draws nodes (services boxed) and edges from need to dependent", function()
      assert.equal(table.concat({
        "digraph jobs {",
        '  "fetch";',
        '  "db" [shape=box];',
        '  "build";',
        '  "it";',
        '  "cleanup";',
        '  "fetch" -> "build";',
        '  "build" -> "it";',
        '  "db" -> "it";',
        '  "fetch" -> "it" [label="done"];',
        '  "db" -> "cleanup" [label="started"];',
        "}",
        "",
      }, "\n"), graph.dot(spec))
    end)

    it("draws only the selection", function()
      assert.equal('digraph jobs {\n  "fetch";\n  "build";\n  "fetch" -> "build";\n}\n',
        graph.dot(spec, graph.select(spec, { "build" })))
    end)

    it("quotes names for DOT", function()
      local dot = graph.dot(mk { { 'a"b' }, { "c\\d", needs = { 'a"b' } } })
      assert.matches('"a\\"b" -> "c\\\\d";', dot, 1, true)
    end)
  end)

  describe("plan", function()
    it("prints one numbered line per job in start order, with its command and needs", function()
      local spec = mk {
        { "test", cmd = "make test", needs = { "build", { "db", "started" } } },
        { "build", argv = { "make", "-j2" }, needs = { "fetch" } },
        { "fetch", argv = { "curl", "-o", "data file.csv", "it's" } },
        { "db", kind = "service", argv = { "redis-server" } },
        { "w", argv = { "./w" }, instances = 3, needs = { "db" } },
      }
      -- The longest command (33 columns) sets where the notes start.
      assert.equal(table.concat({
        "  1. fetch  curl -o 'data file.csv' 'it'\\''s'",
        "  2. build  make -j2                           (needs: fetch)",
        "  3. db     redis-server                       (service)",
        "  4. test   make test                          (needs: build, db:started)",
        "  5. w      ./w                                (3 instances; needs: db)",
        "",
      }, "\n"), graph.plan(spec))
    end)

    it("shows a multi-line shell command on one line", function()
      assert.equal("  1. a  for f in x; do ...\n  2. b  echo hi\n",
        graph.plan(mk { { "a", cmd = "for f in x; do\n  echo $f\ndone\n" }, { "b", cmd = "echo hi\n" } }))
    end)

    it("fails on a cycle", function()
      local plan, msg = graph.plan(mk { { "a", needs = { "a" } } })
      assert.is_nil(plan)
      assert.matches("cycle", msg)
    end)

    it("plans only the selection, numbering from 1", function()
      local spec = mk { { "a" }, { "b", needs = { "a" } }, { "c" } }
      assert.equal("  1. c  true\n", graph.plan(spec, graph.select(spec, { "c" })))
    end)

    it("caps the command column at 40 when a command is very long", function()
      local long = ("x"):rep(60)
      local plan = graph.plan(mk { { "a", cmd = long }, { "b", needs = { "a" } } })
      assert.matches("\n  2%. b  true" .. (" "):rep(36) .. "  %(needs: a%)\n$", plan)
    end)
  end)
end)
