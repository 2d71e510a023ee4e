-- lrun.jobfile.collect: the raw definitions of a job file, before validation. Both
-- loaders fill one `raw` table; a returned Lua table or a YAML document goes through
-- collect.table.
--
--   raw = { file =, dir =, base = basename, format = "lua"|"yaml",
--     entries = { { name =, kind = "job"|"service", t = def, where =, key_where = fn|nil } },
--     settings = { { t =, where =, key_where = } }, policies = { { name =, fn =, where = } },
--     errors = {} }
--   collect.table(raw, top, pos)
--     pos.line(path, key) -> "file:line" | nil   -- path: list of keys from the top
--     pos.order(section)  -> keys of a section in document order | nil
--
-- `key_where(key)` gives "file:line" of a job's key when known (YAML). A Lua table
-- knows neither lines nor order: pos.line and pos.order then return nil.
local D = require "lrun.jobfile.diagnostics"
local checker = require "lrun.jobfile.checker"
local schema = require "lrun.jobfile.schema"

local show, tick, add_error = D.show, D.tick, D.add_error

local M = {}
local IS_TOP = checker.set(schema.TOP_KEYS)

-- The keys of t outside its array part (1..n as ipairs sees it; all keys when
-- `all`), sorted.
function M.sorted_keys(t, all)
  local n, keys = 0, {}
  if not all then
    for i in ipairs(t) do n = i end
  end
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, D.by_text)
  return keys
end

local function add_entry(raw, kind, name, def, path, pos)
  local where = pos.line(path) or raw.base
  if type(def) ~= "table" then
    add_error(raw, "%s: %s %s: must be a table, got %s", where, kind, show(name), type(def))
    return
  end
  raw.entries[#raw.entries + 1] = { name = name, kind = kind, t = def, where = where,
    key_where = pos.keyed and function(key) return pos.line(path, key) end or nil }
end

-- Add the `jobs` or `services` section of a returned table / YAML document.
local function collect_section(raw, t, section, kind, pos)
  local section_where = pos.line({ section }) or raw.base
  if type(t) ~= "table" then
    add_error(raw, "%s: '%s' must be a table of %ss, got %s", section_where, section, kind, type(t))
    return
  end
  -- The array form: { { name = "a", ... }, ... }
  for i, def in ipairs(t) do
    if type(def) == "table" and def.name == nil then
      add_error(raw, "%s: %s #%d in '%s' has no name", pos.line({ section, i }) or raw.base,
        kind, i, section)
    else
      add_entry(raw, kind, type(def) == "table" and def.name or "#" .. i, def, { section, i }, pos)
    end
  end
  -- The map form: { a = { ... } }. A Lua table forgets its order, so names are
  -- sorted; YAML remembers the order of the document.
  local keys, seen = {}, {}
  for _, k in ipairs(pos.order(section) or {}) do
    if t[k] ~= nil and not seen[k] then keys[#keys + 1], seen[k] = k, true end
  end
  for _, k in ipairs(M.sorted_keys(t)) do
    if not seen[k] then keys[#keys + 1] = k end
  end
  for _, name in ipairs(keys) do
    if type(name) ~= "string" then
      add_error(raw, "%s: %s name %s must be a string%s", section_where, kind, show(name),
        raw.format == "yaml" and " (quote it)" or "")
    else
      add_entry(raw, kind, name, t[name], { section, name }, pos)
    end
  end
end

local function collect_policies(raw, policies, pos)
  local where = pos.line({ "policies" }) or raw.base
  if raw.format == "yaml" then
    add_error(raw, "%s: policies can be defined only in a Lua job file" ..
      " (YAML jobs name one with 'policy')", where)
  elseif type(policies) ~= "table" then
    add_error(raw, "%s: 'policies' must be a table, got %s", where, type(policies))
  else
    for _, name in ipairs(M.sorted_keys(policies, true)) do
      raw.policies[#raw.policies + 1] = { name = name, fn = policies[name], where = where }
    end
  end
end

function M.table(raw, top, pos)
  for _, k in ipairs(M.sorted_keys(top, true)) do
    if not IS_TOP[k] then
      add_error(raw, "%s: unknown top-level key %s%s", pos.line({ k }) or raw.base,
        type(k) == "string" and tick(k) or show(k), D.suggest(k, schema.TOP_KEYS))
    end
  end
  local settings = top.settings
  if settings ~= nil and type(settings) ~= "table" then
    add_error(raw, "%s: 'settings' must be a table, got %s", pos.line({ "settings" }) or raw.base,
      type(settings))
  elseif settings ~= nil then
    raw.settings[#raw.settings + 1] = { t = settings,
      where = pos.line({ "settings" }) or raw.base,
      key_where = pos.keyed and function(key) return pos.line({ "settings" }, key) end or nil }
  end
  if top.jobs ~= nil then collect_section(raw, top.jobs, "jobs", "job", pos) end
  if top.services ~= nil then collect_section(raw, top.services, "services", "service", pos) end
  if top.policies ~= nil then collect_policies(raw, top.policies, pos) end
end

return M
