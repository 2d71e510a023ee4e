rockspec_format = "3.0"
package = "lprocess"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lprocess.git",
}
description = {
  summary = "POSIX processes for Lua 5.4, and lrun, a scriptable process runner",
  detailed = [[
lprocess binds fork, exec, a vfork-speed spawn, waitpid with rusage, signals as
file descriptors, pidfds, process groups and sessions for Lua 5.4, with Process
objects, run() and an event loop on top. lrun runs job graphs and services from
jobs.lua / jobs.yaml files with Lua reaper policies.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "lyaml",
  "lua-cjson",
}
build = {
  type = "builtin",
  modules = {
    ["lprocess.core"] = {
      sources = {
        "src/lprocess.c", "src/lp_util.c", "src/lp_spawn.c", "src/lp_wait.c",
        "src/lp_signal.c", "src/lp_fd.c", "src/lp_proc.c", "src/lp_net.c",
        "src/lp_daemon.c",
      },
      defines = { "_GNU_SOURCE" },
    },
    ["lrun.text"] = { sources = { "csrc/lrun_text.c" }, defines = { "_GNU_SOURCE" } },
    ["lrun.groups"] = { sources = { "csrc/lrun_groups.c" }, defines = { "_GNU_SOURCE" } },
    ["lprocess"] = "lua/lprocess/init.lua",
    ["lprocess.loop"] = "lua/lprocess/loop.lua",
    ["lprocess.status"] = "lua/lprocess/status.lua",
    ["lprocess.stop"] = "lua/lprocess/stop.lua",
    ["lprocess.run"] = "lua/lprocess/run.lua",
    ["lprocess.guard"] = "lua/lprocess/guard.lua",
    ["lprocess.restart"] = "lua/lprocess/restart.lua",
    ["lprocess.daemon"] = "lua/lprocess/daemon.lua",
    ["lprocess.pidfile"] = "lua/lprocess/pidfile.lua",
    ["lrun.cli"] = "lua/lrun/cli.lua",
    ["lrun.app"] = "lua/lrun/app.lua",
    ["lrun.scheduler"] = "lua/lrun/scheduler/init.lua",
    ["lrun.scheduler.exits"] = "lua/lrun/scheduler/exits.lua",
    ["lrun.scheduler.needs"] = "lua/lrun/scheduler/needs.lua",
    ["lrun.scheduler.stopping"] = "lua/lrun/scheduler/stopping.lua",
    ["lrun.units"] = "lua/lrun/units.lua",
    ["lrun.policy"] = "lua/lrun/policy.lua",
    ["lrun.ready"] = "lua/lrun/ready.lua",
    ["lrun.executor"] = "lua/lrun/executor.lua",
    ["lrun.jobfile"] = "lua/lrun/jobfile/init.lua",
    ["lrun.jobfile.schema"] = "lua/lrun/jobfile/schema.lua",
    ["lrun.jobfile.fields"] = "lua/lrun/jobfile/fields.lua",
    ["lrun.jobfile.checker"] = "lua/lrun/jobfile/checker.lua",
    ["lrun.jobfile.diagnostics"] = "lua/lrun/jobfile/diagnostics.lua",
    ["lrun.jobfile.collect"] = "lua/lrun/jobfile/collect.lua",
    ["lrun.jobfile.paths"] = "lua/lrun/jobfile/paths.lua",
    ["lrun.jobfile.sandbox"] = "lua/lrun/jobfile/sandbox.lua",
    ["lrun.jobfile.lua_loader"] = "lua/lrun/jobfile/lua_loader.lua",
    ["lrun.jobfile.yaml_loader"] = "lua/lrun/jobfile/yaml_loader.lua",
    ["lrun.graph"] = "lua/lrun/graph.lua",
    ["lrun.output"] = "lua/lrun/output/init.lua",
    ["lrun.output.lines"] = "lua/lrun/output/lines.lua",
    ["lrun.output.term"] = "lua/lrun/output/term.lua",
    ["lrun.output.logs"] = "lua/lrun/output/logs.lua",
    ["lrun.output.tail"] = "lua/lrun/output/tail.lua",
    ["lrun.output.group"] = "lua/lrun/output/group.lua",
    ["lrun.output.status"] = "lua/lrun/output/status.lua",
    ["lrun.report"] = "lua/lrun/report.lua",
    ["lrun.watchdog"] = "lua/lrun/watchdog.lua",
    ["lrun.initmode"] = "lua/lrun/initmode.lua",
    ["lrun.control"] = "lua/lrun/control/init.lua",
    ["lrun.control.protocol"] = "lua/lrun/control/protocol.lua",
    ["lrun.control.server"] = "lua/lrun/control/server.lua",
    ["lrun.control.conn"] = "lua/lrun/control/conn.lua",
    ["lrun.control.commands"] = "lua/lrun/control/commands.lua",
    ["lrun.control.bus"] = "lua/lrun/control/bus.lua",
    ["lrun.control.api"] = "lua/lrun/control/api.lua",
    ["lrun.control.client"] = "lua/lrun/control/client.lua",
    ["lrun.scheduler.ops"] = "lua/lrun/scheduler/ops.lua",
    ["lrun.resume"] = "lua/lrun/resume.lua",
    ["lrun.http"] = "lua/lrun/http/init.lua",
    ["lrun.http.server"] = "lua/lrun/http/server.lua",
    ["lrun.http.page"] = "lua/lrun/http/page.lua",
    ["lrun.slurm"] = "lua/lrun/slurm/init.lua",
    ["lrun.slurm.sbatch"] = "lua/lrun/slurm/sbatch.lua",
    ["lrun.slurm.poll"] = "lua/lrun/slurm/poll.lua",
    ["lrun.slurm.follow"] = "lua/lrun/slurm/follow.lua",
    ["lrun.slurm.admin"] = "lua/lrun/slurm/admin.lua",
    ["lrun.slurm.upfront"] = "lua/lrun/slurm/upfront.lua",
  },
  install = {
    bin = { lrun = "scripts/lrun" },
  },
}
