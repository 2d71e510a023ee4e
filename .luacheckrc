std = "lua54"
max_line_length = 120
self = false
codes = true
-- job files run with these globals (lrun.jobfile)
files["examples/"] = { read_globals = { "job", "service", "policy", "settings" } }
files["spec/fixtures/"] = { read_globals = { "job", "service", "policy", "settings" } }
files["spec/"] = { std = "+busted" }
exclude_files = { "build/", "build-san/", "luarocks-tree/" }
