-- lprocess.core's file functions: mkdir.
local H = require "helper"
local core = H.core

describe("core.mkdir", function()
  local base

  before_each(function()
    base = os.tmpname()
    os.remove(base)
    assert(core.mkdir(base, 448))
  end)

  after_each(function()
    os.execute("rm -rf '" .. base .. "'")
  end)

  it("creates one directory with the mode asked, under the umask", function()
    local old = core.umask(18)           -- 022
    finally(function() core.umask(old) end)
    assert.is_true(core.mkdir(base .. "/a", 504))   -- 0770
    local st = assert(core.stat(base .. "/a"))
    assert.equal("directory", st.type)
    assert.equal(488, st.mode)                     -- 0750: 0770 & ~022
    assert.is_true(core.mkdir(base .. "/b"))
    assert.equal(493, core.stat(base .. "/b").mode) -- 0755: the default 0777 & ~022
  end)

  it("fails with EEXIST on any existing path, ENOENT without a parent", function()
    local f = assert(io.open(base .. "/file", "w"))
    f:close()
    for _, path in ipairs { base, base .. "/file" } do
      local ok, msg, errno = core.mkdir(path)
      assert.is_nil(ok)
      assert.equal(17, errno)                      -- EEXIST
      assert.matches("^mkdir " .. path:gsub("%p", "%%%0") .. ": ", msg)
    end
    local ok, _, errno = core.mkdir(base .. "/no/such")
    assert.is_nil(ok)
    assert.equal(2, errno)                         -- ENOENT
  end)

  it("rejects a mode that is not permission bits", function()
    assert.has_error(function() core.mkdir(base .. "/x", -1) end)
    assert.has_error(function() core.mkdir(base .. "/x", 4096 * 2) end)
    assert.has_error(function() core.mkdir(base .. "/x", 0 / 0) end)
    assert.has_error(function() core.mkdir(base .. "/x", "rwx") end)
    assert.has_error(function() core.mkdir({}) end)
    assert.is_nil(core.stat(base .. "/x"))
  end)
end)
