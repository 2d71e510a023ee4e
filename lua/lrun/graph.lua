--- lrun.graph: questions about the job graph of a validated spec (see lrun.jobfile).
--
-- Pure functions over `spec.jobs` / `spec.by_name` / `job.needs`; nothing here
-- starts a process. An edge "a needs b" is followed from a to b; `selected` is a
-- set `{ [name] = true }` as returned by `select` (nil means every job).
--
--   graph.default_cond(job)          "ready" for a service, "success" for a job:
--                                    what a plain `needs` entry naming it waits for
--   graph.cycle(spec)                { "a", "b", "c", "a" } (a needs b needs c needs a)
--                                    or nil; needs naming unknown jobs are ignored
--   graph.select(spec, targets)      set of the targets and all they need, or
--                                    nil, 'unknown target "x"'; no targets = all jobs
--   graph.order(spec, selected)      start order (Kahn, ties by definition order),
--                                    or nil, message when the selection has a cycle
--   graph.dependents(spec)           { [name] = { names that need it } } (every job
--                                    has an entry; dependents in definition order)
--   graph.dot(spec, selected)        Graphviz DOT text
--   graph.plan(spec, selected)       text for `lrun -n`: one line per job in start
--                                    order, each ending in "\n"

local M = {}

function M.default_cond(job)
  return job.kind == "service" and "ready" or "success"
end

-- Definition index of every job: ties in the start order and the choice of where a
-- printed cycle starts both follow it, so output is stable from run to run.
local function indexes(spec)
  local idx = {}
  for i, job in ipairs(spec.jobs) do idx[job.name] = i end
  return idx
end

local function is_selected(selected, name)
  return selected == nil or selected[name] == true
end

local order_as_defined

function M.cycle(spec)
  -- Needs only of jobs defined earlier: no cycle, and no search for one.
  if order_as_defined(spec, nil, true) then return nil end
  local by_name = spec.by_name
  local idx = indexes(spec)
  local state = {}   -- nil: unseen, 1: on the current path, 2: finished
  local found

  -- Depth-first, with an explicit stack: a generated file may chain thousands of
  -- jobs, deeper than Lua's call stack allows.
  for _, root in ipairs(spec.jobs) do
    if state[root.name] == nil then
      local path, next_need = { root.name }, { 0 }
      state[root.name] = 1
      while #path > 0 and not found do
        local top = #path
        local name = path[top]
        next_need[top] = next_need[top] + 1
        local need = (by_name[name].needs or {})[next_need[top]]
        if need == nil then
          state[name] = 2
          path[top], next_need[top] = nil, nil
        elseif by_name[need.name] then
          local n = need.name
          if state[n] == 1 then
            -- The cycle is the part of the path from n to here.
            local start = top
            while path[start] ~= n do start = start - 1 end
            found = table.move(path, start, top, 1, {})
          elseif state[n] == nil then
            state[n] = 1
            path[top + 1], next_need[top + 1] = n, 0
          end
        end
      end
      if found then break end
    end
  end
  if not found then return nil end

  -- Start the printed cycle at its earliest-defined job.
  local first = 1
  for i = 2, #found do
    if idx[found[i]] < idx[found[first]] then first = i end
  end
  local cycle = {}
  for i = 0, #found - 1 do
    cycle[#cycle + 1] = found[(first - 1 + i) % #found + 1]
  end
  cycle[#cycle + 1] = cycle[1]
  return cycle
end

function M.select(spec, targets)
  local selected = {}
  if targets == nil or #targets == 0 then
    for _, job in ipairs(spec.jobs) do selected[job.name] = true end
    return selected
  end
  local stack = {}
  for _, name in ipairs(targets) do
    if not spec.by_name[name] then
      return nil, ('unknown target "%s"'):format(tostring(name))
    end
    stack[#stack + 1] = name
  end
  while #stack > 0 do
    local name = table.remove(stack)
    if not selected[name] then
      selected[name] = true
      for _, need in ipairs(spec.by_name[name].needs) do
        if spec.by_name[need.name] then stack[#stack + 1] = need.name end
      end
    end
  end
  return selected
end

function M.dependents(spec)
  local deps = {}
  for _, job in ipairs(spec.jobs) do deps[job.name] = {} end
  for _, job in ipairs(spec.jobs) do
    for _, need in ipairs(job.needs) do
      local list = deps[need.name]
      if list then list[#list + 1] = job.name end
    end
  end
  return deps
end

-- A binary min-heap of definition indexes: the ready job defined first starts first,
-- without rescanning the whole ready set for each pick.
local function heap_push(h, v)
  h[#h + 1] = v
  local i = #h
  while i > 1 do
    local p = i // 2
    if h[p] <= h[i] then break end
    h[p], h[i] = h[i], h[p]
    i = p
  end
end

local function heap_pop(h)
  local top, n = h[1], #h
  h[1] = h[n]
  h[n] = nil   -- separately: when n == 1 both would name h[1]
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and h[l] < h[m] then m = l end
    if r <= n and h[r] < h[m] then m = r end
    if m == i then break end
    h[m], h[i] = h[i], h[m]
    i = m
  end
  return top
end

-- How many of a spec's jobs, from the first, are known to be in a start order: jobs
-- are only ever appended (lrun ctl add), so the answer holds for that many. A
-- selection of them is in order too (an edge inside it goes forward).
local in_order = setmetatable({}, { __mode = "k" })

-- The definition order when it already is a start order (every need defined before
-- the job that names it, as in most files): what Kahn's algorithm with ties by
-- definition order would give, in one pass and without a heap. nil otherwise
-- (check_only: true instead of the order).
function order_as_defined(spec, selected, check_only)
  local order = {}
  if in_order[spec] == #spec.jobs then
    if check_only then return true end
    for _, job in ipairs(spec.jobs) do
      if selected == nil or selected[job.name] == true then order[#order + 1] = job.name end
    end
    return order
  end
  local seen = {}
  local by_name = spec.by_name
  for _, job in ipairs(spec.jobs) do
    local name = job.name
    if selected == nil or selected[name] == true then
      for _, need in ipairs(job.needs) do
        local n = need.name
        if not seen[n] and by_name[n] and (selected == nil or selected[n] == true) then
          return nil
        end
      end
      seen[name] = true
      if not check_only then order[#order + 1] = name end
    end
  end
  if selected == nil then in_order[spec] = #spec.jobs end
  return check_only or order
end

function M.order(spec, selected)
  local fast = order_as_defined(spec, selected)
  if fast then return fast end
  local idx = indexes(spec)
  local pending, ready, count = {}, {}, 0
  local deps = M.dependents(spec)
  for i, job in ipairs(spec.jobs) do
    if is_selected(selected, job.name) then
      count = count + 1
      local n = 0
      for _, need in ipairs(job.needs) do
        if spec.by_name[need.name] and is_selected(selected, need.name) then n = n + 1 end
      end
      pending[job.name] = n
      if n == 0 then heap_push(ready, i) end
    end
  end
  local order = {}
  while #ready > 0 do
    local name = spec.jobs[heap_pop(ready)].name
    order[#order + 1] = name
    for _, dep in ipairs(deps[name]) do
      if pending[dep] then
        pending[dep] = pending[dep] - 1
        if pending[dep] == 0 then heap_push(ready, idx[dep]) end
      end
    end
  end
  if #order < count then return nil, "the selected jobs have a dependency cycle" end
  return order
end

local function dot_id(name)
  return '"' .. name:gsub('[\\"]', "\\%0") .. '"'
end

function M.dot(spec, selected)
  local out = { "digraph jobs {" }
  for _, job in ipairs(spec.jobs) do
    if is_selected(selected, job.name) then
      out[#out + 1] = ("  %s%s;"):format(dot_id(job.name),
        job.kind == "service" and " [shape=box]" or "")
    end
  end
  for _, job in ipairs(spec.jobs) do
    if is_selected(selected, job.name) then
      for _, need in ipairs(job.needs) do
        local target = spec.by_name[need.name]
        if target and is_selected(selected, need.name) then
          local label = ""
          if need.cond ~= M.default_cond(target) then
            label = (' [label="%s"]'):format(need.cond)
          end
          out[#out + 1] = ("  %s -> %s%s;"):format(dot_id(need.name), dot_id(job.name), label)
        end
      end
    end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

-- Quote an argv word for display the way a shell would need it.
local function shell_word(word)
  if word ~= "" and not word:find("[^%w@%%+=:,./_-]") then return word end
  return "'" .. word:gsub("'", [['\'']]) .. "'"
end

-- quoted: word -> shell_word(word), shared by the lines of one plan (a generated
-- file repeats its programs and flags in every job).
local function quote(w, quoted)
  local q = quoted[w]
  if not q then q = shell_word(w); quoted[w] = q end
  return q
end

local function argv_text(argv, quoted)
  local n = #argv
  if n == 1 then return quote(argv[1], quoted) end
  local words = {}
  for i = 1, n do words[i] = quote(argv[i], quoted) end
  return table.concat(words, " ")
end

-- A command as one line: a multi-line shell script shows its first line and "...".
function M.command_text(job, quoted)
  if job.cmd then
    local cmd = job.cmd:match("^%s*(.-)%s*$")
    local first = cmd:match("^([^\n]-)%s*\n")
    return first and first .. " ..." or cmd
  end
  if not job.argv or not job.argv[1] then return "" end
  return argv_text(job.argv, quoted or {})
end

-- Past this width a command no longer pushes the notes of every other line right.
local MAX_CMD_COLUMN = 40

-- pad[k]: k spaces, for k = 0 .. width.
local function pads(width)
  local pad = { [0] = "" }
  for k = 1, width do pad[k] = pad[k - 1] .. " " end
  return pad
end

-- "needs: a, b:started" (a need waiting for its target's default condition shows
-- the name alone); buf is reused from line to line.
local function needs_note(by_name, jn, n, buf)
  for k = 1, n do
    local need = jn[k]
    local target, name, cond = by_name[need.name], need.name, need.cond
    if target and cond ~= M.default_cond(target) then
      buf[k] = name .. ":" .. cond
    else
      buf[k] = name
    end
  end
  if n == 1 then return "needs: " .. buf[1] end
  return "needs: " .. table.concat(buf, ", ", 1, n)
end

function M.plan(spec, selected)
  local order, err = M.order(spec, selected)
  if not order then return nil, err end
  local by_name, count = spec.by_name, #order
  local name_w, cmd_w, cmds, quoted = 0, 0, {}, {}
  for i = 1, count do
    local name = order[i]
    local cmd = M.command_text(by_name[name], quoted)
    cmds[i] = cmd
    if #name > name_w then name_w = #name end
    if #cmd > cmd_w then cmd_w = #cmd end
  end
  cmd_w = math.min(cmd_w, MAX_CMD_COLUMN)
  -- A line is one concatenation of its columns, padded from `pad` (a 100 000-job
  -- plan is 100 000 of these; string.format's %-Ns costs a vfprintf per column).
  local index_w = #tostring(count)
  local pad = pads(math.max(name_w, cmd_w, index_w))
  local lines, buf, notes = {}, {}, {}
  for i = 1, count do
    local name = order[i]
    local job = by_name[name]
    local nn = 0
    if job.kind == "service" then nn = nn + 1; notes[nn] = "service" end
    if job.instances > 1 then
      nn = nn + 1; notes[nn] = job.instances .. " instances"
    end
    local jn = job.needs
    local n = #jn
    if n > 0 then
      nn = nn + 1
      notes[nn] = needs_note(by_name, jn, n, buf)
    end
    local cmd = cmds[i]
    local head = pad[index_w - #tostring(i)]
    if nn == 0 then
      lines[i] = "  " .. head .. i .. ". " .. name .. pad[name_w - #name] .. "  " .. cmd
    else
      local cpad = #cmd < cmd_w and pad[cmd_w - #cmd] or ""
      lines[i] = "  " .. head .. i .. ". " .. name .. pad[name_w - #name] .. "  " .. cmd
        .. cpad .. "  (" .. (nn == 1 and notes[1] or table.concat(notes, "; ", 1, nn)) .. ")"
    end
  end
  -- The empty last entry ends the text in "\n" without copying it once more.
  if count > 0 then lines[count + 1] = "" end
  return table.concat(lines, "\n")
end

return M
