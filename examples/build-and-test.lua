-- Build and test the small C program in c-hello/ without a Makefile: compile every
-- object at once, link, run the unit tests, then check the finished program.
--
--   lrun examples/build-and-test.lua              everything
--   lrun examples/build-and-test.lua hello        only the program and what it needs
--   lrun -n examples/build-and-test.lua           the plan, in start order
--   lrun --graph examples/build-and-test.lua | dot -Tpng > build.png
--
-- A job file is Lua, so a build is data plus a loop. Commands in a list are exec'd
-- as they are, with no shell in between; paths are relative to this file's
-- directory. CC, CFLAGS and OUT (the build directory) may come from the environment.

local CC = os.getenv("CC") or "cc"
local CFLAGS = os.getenv("CFLAGS") or "-std=c11 -O2 -Wall -Wextra -Werror"
local OUT = os.getenv("OUT") or "c-hello/build"

-- { "cc", <CFLAGS split into words>, ... }
local function cc(...)
  local argv = { CC }
  for word in CFLAGS:gmatch("%S+") do argv[#argv + 1] = word end
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  return argv
end

job "outdir" { "mkdir", "-p", OUT }

-- One job per object file, named after it, all free to run side by side.
for _, name in ipairs({ "greet", "words", "main", "test_hello" }) do
  local compile = cc("-c", "-o", OUT .. "/" .. name .. ".o", "c-hello/" .. name .. ".c")
  compile.needs = "outdir"
  compile.timeout = 60                  -- seconds: a stuck compiler fails the build
  job(name .. ".o")(compile)
end

local link = cc("-o", OUT .. "/hello", OUT .. "/main.o", OUT .. "/greet.o", OUT .. "/words.o")
link.needs = { "main.o", "greet.o", "words.o" }
job "hello" (link)

local link_tests = cc("-o", OUT .. "/test_hello", OUT .. "/test_hello.o", OUT .. "/greet.o",
  OUT .. "/words.o")
link_tests.needs = { "test_hello.o", "greet.o", "words.o" }
job "test_hello" (link_tests)

-- The unit tests print TAP ("ok 1 - ...") and exit 1 when one fails.
job "unit" { OUT .. "/test_hello", needs = "test_hello", timeout = 10 }

-- Run the real program the way a user would. A string command goes to /bin/sh -c.
job "integration" {
  cmd = [[
    set -e
    test "$("$OUT/hello" Ada)" = "Hello, Ada!"
    test "$("$OUT/hello")" = "Hello, world!"
    test "$(seq 1000 | "$OUT/hello" -c)" = "1000 words"
    echo "integration: 3 checks passed"
  ]],
  env = { OUT = OUT },
  needs = { "hello", "unit" },          -- no point checking a program whose units fail
  timeout = 10,
  retries = 1,                          -- one more try if it fails (a loaded CI box)
}
