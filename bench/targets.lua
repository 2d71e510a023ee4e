-- targets.lua -- the targets of issue 6, checked against one run's figures.
-- Only the `counts` figures gate (make bench exits 1 past bench/gates.lua's
-- ceilings): they are stable; wall-time ratios on a shared 2-core machine are
-- reported, never gated.
local M = {}

local function fmt(x) return ("%.2fx"):format(x) end

local function med(sec, key)
  local o = sec and sec.results and sec.results[key]
  return o and o.stat and o.stat.median
end

local PEERS = { "xargs", "make", "parallel", "python", "sh", "lua-exec", "lua-popen" }

function M.check(data, ctx)
  local out, gate = {}, nil
  local function add(name, want, got, ok)
    local status = ok == nil and "n/a" or (ok and "met" or "MISSED")
    out[#out + 1] = { name = name, want = want, got = got or "-", status = status }
  end
  local contenders = { { "lrun", "lrun" }, { "lp-wait", "lprocess spawn/wait" },
    { "lp-loop", "lprocess event loop" } }

  for _, w in ipairs { { "true-seq", 1.05 }, { "true-p2", 1.05 }, { "tiny-seq", 1.10 }, { "dag-p8", 1.03 } } do
    local sec = data[w[1]]
    if sec then
      local base = med(sec, "c-posix")
      for _, c in ipairs(contenders) do
        local m = med(sec, c[1])
        if m and base then
          add(("%s: %s vs C posix_spawn"):format(w[1], c[2]), ("<= %.2fx"):format(w[2]), fmt(m / base),
            m / base <= w[2])
          if w[1] ~= "dag-p8" and w[1] ~= "tiny-seq" then
            local slowest_ok, worst = true, nil
            for _, p in ipairs(PEERS) do
              local pm = med(sec, p)
              if pm and pm <= m then
                slowest_ok = false
                worst = (worst and worst .. ", " or "") .. p
              end
            end
            add(("%s: %s faster than every peer"):format(w[1], c[2]), "yes",
              worst and ("not faster than " .. worst) or "yes", slowest_ok)
          end
        elseif c[1] == "lrun" and not ctx.lrun then
          add(("%s: %s"):format(w[1], c[2]), ("<= %.2fx"):format(w[2]), "lrun not ready", nil)
        end
      end
      if w[1] == "tiny-seq" then
        for _, c in ipairs(contenders) do
          local m = med(sec, c[1])
          local ex, py = med(sec, "lua-exec"), med(sec, "python")
          if m and ex then
            add(("tiny-seq: %s vs os.execute"):format(c[2]), ">= 4x faster", fmt(ex / m) .. " faster", ex / m >= 4)
          end
          if m and py then
            add(("tiny-seq: %s vs Python"):format(c[2]), ">= 1.15x faster", fmt(py / m) .. " faster", py / m >= 1.15)
          end
        end
      end
    end
  end

  for _, sec in pairs(data) do
    if sec.targets then
      for _, t in ipairs(sec.targets) do add(t.name, t.want, t.got, t.ok) end
      if sec.targets.gate then gate = (gate and gate .. "; " or "") .. sec.targets.gate end
    end
  end
  return out, gate
end

return M
