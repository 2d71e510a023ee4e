-- report.lua -- the results as a terminal table and as bench/RESULTS.md.
--
-- A section is { name=, what=, columns={...}, rows={{cell...}}, notes={...},
-- commands={...} }; a target is { name=, want=, got=, status="met"|"MISSED"|"n/a" }.
local util = require "util"

local M = {}

function M.us(s) return s and ("%.1f"):format(s * 1e6) or "-" end
function M.ms(s) return s and ("%.1f"):format(s * 1e3) or "-" end
function M.x(r) return r and ("%.2fx"):format(r) or "-" end

-- Rows "tool | median | min | max | ratio | runs" for results from rounds.run,
-- figures per job in microseconds, ratios to the baseline tool's median.
function M.tool_rows(results, tools, baseline_key)
  local base = results[baseline_key] and results[baseline_key].stat
  local rows = {}
  for _, tool in ipairs(tools) do
    local o = results[tool.key]
    if o then
      if o.stat then
        rows[#rows + 1] = { tool.name, M.us(o.stat.median), M.us(o.stat.min), M.us(o.stat.max),
          base and M.x(o.stat.median / base.median) or "-", ("%d x %d"):format(#o.samples, o.jobs) }
      else
        rows[#rows + 1] = { tool.name, "failed", "", "", "", (o.error or ""):match("[^\n]*"):sub(1, 60) }
      end
    end
  end
  return rows
end

M.TOOL_COLUMNS = { "tool", "median us/job", "min", "max", "vs C posix_spawn", "runs x jobs" }

local function widths(columns, rows)
  local w = {}
  for i, c in ipairs(columns) do w[i] = #c end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, #tostring(c)) end
  end
  return w
end

local function text_table(columns, rows)
  local w = widths(columns, rows)
  local out = {}
  local function line(cells)
    local t = {}
    for i = 1, #columns do
      local c = tostring(cells[i] or "")
      t[i] = i == 1 and c .. (" "):rep(w[i] - #c) or (" "):rep(w[i] - #c) .. c
    end
    out[#out + 1] = "  " .. table.concat(t, "  ")
  end
  line(columns)
  for _, r in ipairs(rows) do line(r) end
  return table.concat(out, "\n")
end

local function md_table(columns, rows)
  local out = { "| " .. table.concat(columns, " | ") .. " |" }
  local sep = {}
  for i = 1, #columns do sep[i] = i == 1 and ":--" or "--:" end
  out[#out + 1] = "| " .. table.concat(sep, " | ") .. " |"
  for _, r in ipairs(rows) do
    local t = {}
    for i = 1, #columns do t[i] = tostring(r[i] or ""):gsub("|", "\\|") end
    out[#out + 1] = "| " .. table.concat(t, " | ") .. " |"
  end
  return table.concat(out, "\n")
end

local function target_rows(targets)
  local rows = {}
  for _, t in ipairs(targets) do rows[#rows + 1] = { t.name, t.want, t.got, t.status } end
  return rows
end
local TARGET_COLUMNS = { "target", "wanted", "measured", "status" }

function M.text(sections, targets)
  local out = {}
  for _, s in ipairs(sections) do
    out[#out + 1] = ("\n== %s: %s"):format(s.name, s.what or "")
    out[#out + 1] = text_table(s.columns, s.rows)
    for _, n in ipairs(s.notes or {}) do out[#out + 1] = "  * " .. n end
  end
  out[#out + 1] = "\n== targets"
  out[#out + 1] = text_table(TARGET_COLUMNS, target_rows(targets))
  return table.concat(out, "\n") .. "\n"
end

function M.markdown(sections, targets, m, opts)
  local out = {}
  local function p(s) out[#out + 1] = s or "" end
  p "# Benchmark results"
  p ""
  p("Written by `" .. opts.command .. "` (bench/run); do not edit by hand. " ..
    "Every tool runs the same jobs, round by round in a rotated order; figures are " ..
    "medians over the rounds (min and max beside them), per job for the spawn " ..
    "workloads, with the ratio to the C posix_spawn baseline (lower is faster).")
  p ""
  p "## Machine"
  p ""
  p(("- %s CPUs, %s, %d GB RAM; %s"):format(m.nproc, m.cpu, m.mem_gb, m.kernel))
  p(("- date %s, commit %s, load before the run %s, total run time %.0f s"):format(
    m.date, m.commit, m.load, opts.elapsed or 0))
  p(("- %s; %s; %s; %s; %s; %s"):format(m.versions.lua, m.versions.make, m.versions.parallel,
    m.versions.python, m.versions.xargs, m.versions.libc))
  p ""
  p "## Targets (issue 6)"
  p ""
  p(md_table(TARGET_COLUMNS, target_rows(targets)))
  for _, s in ipairs(sections) do
    p ""
    p(("## %s"):format(s.name))
    p ""
    if s.what then p(s.what .. ".") p "" end
    p(md_table(s.columns, s.rows))
    if s.notes and #s.notes > 0 then
      p ""
      for _, n in ipairs(s.notes) do p("- " .. n) end
    end
    if s.commands and #s.commands > 0 then
      p ""
      p "<details><summary>commands</summary>"
      p ""
      p "```"
      for _, c in ipairs(s.commands) do p(c) end
      p "```"
      p ""
      p "</details>"
    end
  end
  if opts.analysis then
    p ""
    p(opts.analysis)
  end
  return table.concat(out, "\n") .. "\n"
end

-- The commands of a rounds.run result, repository-relative.
function M.commands(results, tools)
  local c = {}
  for _, tool in ipairs(tools) do
    local o = results[tool.key]
    if o then c[#c + 1] = util.show(o.argv) end
  end
  return c
end

return M
