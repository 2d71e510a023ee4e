-- lrun.text: the C module of lrun's output path.
describe("lrun.text", function()
  describe("prefix_lines", function()
    local pl = require("lrun.text").prefix_lines

    it("prefixes every complete line and says where the last one ends", function()
      assert.same({ "> a\n> b\n", 4 }, { pl("a\nb\nc", 1, "> ") })
      assert.same({ "> b\n", 4 }, { pl("a\nb\nc", 3, "> ") })
      assert.same({ "", 0 }, { pl("abc", 1, "> ") })
      assert.same({ "", 3 }, { pl("a\nbc", 4, "> ") })
      assert.same({ "", 0 }, { pl("", 1, "> ") })
      assert.same({ "p\np\n", 2 }, { pl("\n\n", 1, "p") })
      assert.same({ "x\n", 1 }, { pl("\n", 1, "x") })
      assert.same({ "a\nb\n", 4 }, { pl("a\nb\n", 1, "") })
      assert.same({ "[j] \0\255\n", 3 }, { pl("\0\255\n", 1, "[j] ") })
      assert.same({ "%1 \n%1 x\n", 3 }, { pl("\nx\n", 1, "%1 ") })   -- no pattern escapes
    end)

    it("handles a megabyte of lines like gsub would", function()
      local lines = {}
      for i = 1, 20000 do lines[i] = ("line %d %s"):format(i, ("x"):rep(i % 97)) end
      local s = table.concat(lines, "\n") .. "\ntail"
      local text, last = pl(s, 1, "job | ")
      assert.equal(#s - 4, last)
      assert.equal((s:sub(1, last):gsub("[^\n]*\n", "job | %0")), text)
    end)

    it("checks its arguments", function()
      assert.has_error(function() pl("abc", 0, "x") end)
      assert.has_error(function() pl("abc", 5, "x") end)
      assert.has_error(function() pl("abc", 1) end)
      assert.same({ "", 3 }, { pl("abc", 4, "x") })
    end)
  end)

end)
