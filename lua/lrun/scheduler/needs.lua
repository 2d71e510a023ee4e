--- lrun.scheduler.needs: when a unit's needs are met -- counted per unit, and looked
-- at again only where a change of another job can move them. Methods of the
-- scheduler (lrun.scheduler installs them); nothing here starts anything.
--
--   needs.install(Scheduler)   -- adds _index_needs, _evaluate, _changed, _skip_never,
--                              -- _enqueue
--   needs.ON_START, needs.ON_READY   -- the `only` sets of _changed
local units = require "lrun.units"

local M = {}
local Scheduler = {}

local is_met, set_met = units.is_met, units.set_met

-- The conditions a start, or a unit seen ready, can change (an end changes any).
M.ON_START = { started = true, ready = true }
M.ON_READY = { ready = true }
local NONE = {}

-- A unit's needs are counted, not re-read: `u.unmet` is how many of its needs are not
-- met now, `u.met` which are (a bit set, or a table past 62 needs: no table per unit
-- in the usual case). A change of job J looks again only at the
-- needs naming J (self.edges[J.name]: { dependent job, need index } pairs), so a
-- state change costs O(its out-edges), not O(every need of every dependent) (make
-- and ninja keep the same count). A met need may be unmet again (a service that
-- restarts is no longer ready): the count goes back up.

-- The edges of the graph, again once jobs have joined it (lrun ctl add, add_job{}).
-- live_edges: those of them a start or a readiness can change (conditions started
-- and ready); most graphs have none, and a start then looks at nothing.
function Scheduler:_index_needs()
  self.edges = units.need_edges(self.spec, self.by_job)
  local live = {}
  for name, list in pairs(self.edges) do
    for i = 1, #list, 2 do
      local cond = list[i].needs[list[i + 1]].cond
      if cond == "started" or cond == "ready" then
        local l = live[name]
        if not l then l = {}; live[name] = l end
        l[#l + 1], l[#l + 2] = list[i], list[i + 1]
      end
    end
  end
  self.live_edges = live
end

function Scheduler:_skip_never(u, need)
  -- A job that runs only on another's failure is not at fault when that other job
  -- succeeded: its skip does not fail the run.
  u.benign = need.cond == "failure"
    and units.need_state(self.by_job[need.name], "success") == "met"
  return self:_finish(u, "skipped", string.format("needs %s (%s), which can no longer be met",
    need.name, need.cond))
end

function Scheduler:_enqueue(u)
  u.state = "queued"
  local q = u.service and self.svc_queue or self.queue
  q[#q + 1] = u
end

-- Conditions a unit still waiting to run neither meets nor rules out (whatever its
-- earlier runs left: ready_at, pid); at the start of a run most needs are on one.
local UNDECIDED_BY_WAITING = { success = true, done = true, failure = true }

-- Every need of a waiting unit, from scratch (once, at the start of the run).
function Scheduler:_evaluate(u)
  if u.state ~= "waiting" then return end
  local needs = u.job.needs
  local unmet = 0
  u.met = #needs > 62 and {} or 0
  for k, need in ipairs(needs) do
    local list, cond = self.by_job[need.name], need.cond
    local st = "wait"
    if not (UNDECIDED_BY_WAITING[cond] and #list == 1 and list[1].state == "waiting") then
      st = units.need_state(list, cond)
    end
    if st == "never" then return self:_skip_never(u, need) end
    -- met starts empty: only a met need sets its bit
    if st == "met" then set_met(u, k, true) else unmet = unmet + 1 end
  end
  u.unmet = unmet
  if unmet == 0 then self:_enqueue(u) end
end


-- Something about `job` changed: look again at the needs that name it (with `only`,
-- those whose condition is in that set).
function Scheduler:_changed(job, only)
  local edges = (only and self.live_edges or self.edges)[job.name]
  if edges then
    local mine = self.by_job[job.name]
    local by_job, need_state = self.by_job, units.need_state
    local on_success   -- need_state(mine, "success"), the usual condition, asked once
    for i = 1, #edges, 2 do
      local dep, k = edges[i], edges[i + 1]
      local need = dep.needs[k]
      local list = only and not only[need.cond] and NONE or by_job[dep.name]
      for j = 1, #list do
        local v = list[j]
        if v.state == "waiting" and v.unmet then
          local st
          if need.cond == "success" then
            st = on_success or need_state(mine, "success")
            on_success = st
          else
            st = need_state(mine, need.cond)
          end
          if st == "never" then
            self:_skip_never(v, need)
          elseif (st == "met") ~= is_met(v, k) then
            set_met(v, k, st == "met")
            v.unmet = v.unmet + (st == "met" and -1 or 1)
            if v.unmet == 0 then self:_enqueue(v) end
          end
        end
      end
    end
  end
  self:_fill()
end

function M.install(class)
  for k, fn in pairs(Scheduler) do class[k] = fn end
end

return M
