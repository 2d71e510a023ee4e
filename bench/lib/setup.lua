-- setup.lua -- what the benchmark needs before it measures: its C helpers built,
-- GNU parallel installed when missing (as root, through apt-get), and whether the
-- lrun command works yet.
local util = require "util"

local M = {}

local R, W = util.root, util.work

local function newer(src, out)
  -- rebuild when the output is missing or older than the source
  return os.execute(("[ -x %s ] && [ %s -ot %s ]"):format(util.q(out), util.q(src), util.q(out))) ~= true
end

local function cc(args)
  local cmd = (os.getenv("CC") or "cc") .. " " .. args
  if os.execute(cmd) ~= true then error("bench: build failed: " .. cmd) end
end

function M.build()
  os.execute("mkdir -p " .. util.q(W .. "/bin"))
  local c = R .. "/bench/c/"
  local b = W .. "/bin/"
  if newer(c .. "spawnc.c", b .. "spawnc") then
    cc(("-O2 -Wall -Wextra -o %sspawnc %sspawnc.c"):format(b, c))
  end
  if newer(c .. "stamp.c", b .. "stamp") then
    cc(("-O2 -Wall -o %sstamp %sstamp.c"):format(b, c))
  end
  if newer(c .. "tiny_true.c", b .. "tiny_true") then
    cc(("-O2 -static -nostdlib -fno-stack-protector -fno-pie -no-pie -o %stiny_true %stiny_true.c"):format(b, c))
  end
end

-- Install GNU parallel when missing and we may; otherwise the tool is left out.
function M.peers()
  if util.have("parallel") then return end
  local root = util.capture({ "id", "-u" })
  if root and root:match("^0") and util.have("apt-get") then
    util.log("installing GNU parallel (apt-get install -y parallel)")
    os.execute("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq parallel >/dev/null 2>&1"
      .. " || (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive"
      .. " apt-get install -y -qq parallel >/dev/null 2>&1)")
  end
  if not util.have("parallel") then util.log("GNU parallel unavailable: left out") end
end

-- Does `scripts/lrun -j2 FILE` run a two-job file and exit 0?
function M.lrun_ready()
  local f = util.writefile(W .. "/lrun-probe.lua",
    'job "a" { "/bin/true" }\njob "b" { "/bin/true", needs = "a" }\n')
  local res = util.run({ R .. "/scripts/lrun", "-j2", f })
  if not res.ok then
    util.log("lrun not ready (%s): its rows are left out",
      (res.log or ""):match("[^\n]*") or "failed")
  end
  return res.ok
end

function M.machine()
  local m = {}
  m.nproc = (util.capture({ "nproc" }) or "?"):gsub("%s+$", "")
  local cpu = util.readfile("/proc/cpuinfo") or ""
  m.cpu = cpu:match("model name%s*:%s*([^\n]+)") or "?"
  m.kernel = (util.capture({ "uname", "-srm" }) or "?"):gsub("%s+$", "")
  m.date = os.date("!%Y-%m-%d %H:%M UTC")
  local mem = util.readfile("/proc/meminfo") or ""
  m.mem_gb = math.floor((tonumber(mem:match("MemTotal:%s*(%d+)")) or 0) / 1048576 + 0.5)
  local load = util.readfile("/proc/loadavg") or ""
  m.load = load:match("^(%S+ %S+ %S+)") or "?"
  local function ver(argv, pat)
    local s = util.capture(argv)
    return s and (s:match(pat) or s:match("[^\n]*")) or "n/a"
  end
  m.versions = {
    lua = _VERSION,
    make = ver({ "make", "--version" }, "^[^\n]*"),
    parallel = ver({ "parallel", "--version" }, "^[^\n]*"),
    python = ver({ "python3", "--version" }, "^[^\n]*"),
    xargs = ver({ "xargs", "--version" }, "^[^\n]*"),
    libc = ver({ "ldd", "--version" }, "^[^\n]*"),
  }
  local head = util.capture({ "git", "-C", R, "rev-parse", "--short", "HEAD" })
  m.commit = head and head:gsub("%s+$", "") or "?"
  return m
end

return M
