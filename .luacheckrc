std = "lua54"
max_line_length = 120
self = false
codes = true
-- job files run with these globals (lrun.jobfile)
files["examples/"] = { read_globals = { "job", "service", "policy", "settings" } }
files["spec/fixtures/"] = { read_globals = { "job", "service", "policy", "settings" },
  max_line_length = false, unused_args = false }
files["spec/"] = { std = "+busted" }
-- jf_syntax.lua is a job file with a syntax error on purpose
exclude_files = { "build/", "build-san/", "luarocks-tree/", "spec/fixtures/jf_syntax.lua" }
