-- Drives a real headless Neovim with the suggest_ls plugin against the real server.
-- Run by tests/editors/test_nvim.py: nvim --headless --clean -S nvim_e2e.lua
-- Environment: SUGGEST_PLUGIN (editors/nvim), SUGGEST_PYTHON, SUGGEST_FILE, SUGGEST_OUT (JSON written here),
-- SUGGEST_TYPE (keys typed at the end of the file), SUGGEST_SCENARIO ("refresh": see refresh_scenario).
local out = {}
local NS = vim.api.nvim_create_namespace("nvim.lsp.inline_completion")

local function finish(err)
  out.error = err
  local f = assert(io.open(vim.env.SUGGEST_OUT, "w"))
  f:write(vim.json.encode(out))
  f:close()
  vim.cmd("qa!")
end

local co
local function sleep(ms)
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      finish(debug.traceback(co, err))
    end
  end, ms)
  coroutine.yield()
end

local function wait_for(what, timeout_ms, cond)
  local waited = 0
  while waited < timeout_ms do
    local v = cond()
    if v then
      return v, waited
    end
    sleep(50)
    waited = waited + 50
  end
  error("timed out waiting for " .. what)
end

local function ghost()
  local marks = vim.api.nvim_buf_get_extmarks(0, NS, 0, -1, { details = true })
  for _, m in ipairs(marks) do
    local vt = m[4].virt_text
    if vt and vt[1] and vt[1][1] ~= "" then
      return { row = m[2], col = m[3], text = vt[1][1], hl = vt[1][2], lines = #(m[4].virt_lines or {}) }
    end
  end
end

local function status_lines()
  local got
  require("suggest_ls").status(function(lines)
    got = lines
  end)
  return wait_for("suggest/status", 10000, function()
    return got
  end)
end

local function raw_status(client)
  local got
  client:request("suggest/status", {}, function(err, result)
    got = { err = err, result = result }
  end)
  local r = wait_for("raw suggest/status", 10000, function()
    return got
  end)
  return r.result
end

local function line(n)
  return vim.api.nvim_buf_get_lines(0, n - 1, n, true)[1]
end

local function type_keys(keys)
  for ch in keys:gmatch(".") do
    vim.api.nvim_feedkeys(ch, "t", false)
    sleep(40)
  end
end

-- The refresh scenario: first words of a long line at once, then the whole line when the server
-- sends suggest/refresh, with no keystroke in between.
local function refresh_scenario(last)
  local first = wait_for("first words", 60000, ghost)
  out.first_ghost = first
  local whole = wait_for("the whole line after suggest/refresh", 60000, function()
    local g = ghost()
    return g and g.text ~= first.text and g or nil
  end)
  out.whole_ghost = whole
  out.line_after_refresh = line(last)
  finish(nil)
end

local function main()
  vim.opt.rtp:prepend(vim.env.SUGGEST_PLUGIN)
  local sls = require("suggest_ls")
  local settings = { temperature = 0, debounceMs = 0 }
  if vim.env.SUGGEST_SCENARIO == "refresh" then
    settings.lineBudgetMs, settings.lineDeadlineMs = 1, 0 -- first words as soon as there are any
  end
  sls.setup({
    cmd = { vim.env.SUGGEST_PYTHON, "-m", "suggest_ls", "--stdio" },
    settings = settings,
  })
  vim.cmd.edit(vim.env.SUGGEST_FILE)
  local client = wait_for("client attach", 20000, function()
    return sls.clients()[1]
  end)
  out.client_name = client.name
  out.filetype = vim.bo.filetype
  wait_for("ready notification", 60000, function()
    local s = sls.state[client.id]
    return s and s.state == "ready"
  end)
  out.statusline_ready = sls.statusline()
  out.inline_enabled = vim.lsp.inline_completion.is_enabled({ bufnr = 0 })

  -- type at the end of the last line, as a person would
  local last = vim.api.nvim_buf_line_count(0)
  vim.api.nvim_win_set_cursor(0, { last, #line(last) })
  sleep(600) -- reading before typing: the plugin says where the cursor is, the server warms the prompt there
  vim.api.nvim_feedkeys("A", "nt", false)
  sleep(50)
  type_keys(vim.env.SUGGEST_TYPE)
  out.typed_line = line(last)
  if vim.env.SUGGEST_SCENARIO == "refresh" then
    return refresh_scenario(last)
  end
  local g, waited = wait_for("ghost text extmark", 60000, ghost)
  out.ghost = g
  out.ghost_wait_ms = waited
  out.mode_before_accept = vim.api.nvim_get_mode().mode

  -- accept with <Tab> (through the plugin's mapping)
  vim.api.nvim_feedkeys(vim.keycode("<Tab>"), "m", false)
  wait_for("buffer change after <Tab>", 5000, function()
    return line(last) ~= out.typed_line
  end)
  out.accepted_line = line(last)
  out.cursor_after_accept = vim.api.nvim_win_get_cursor(0)
  out.status = status_lines()
  out.raw_status = raw_status(client)

  -- disabled: the server says so, and <Tab> is a plain <Tab> again
  vim.cmd("SuggestLsDisable")
  wait_for("disabled notification", 10000, function()
    local s = sls.state[client.id]
    return s and s.state == "disabled"
  end)
  out.statusline_disabled = sls.statusline()
  -- plain buffer options so that a <Tab> inserts exactly one tab character on a new empty line
  vim.bo.expandtab, vim.bo.softtabstop, vim.bo.indentexpr, vim.bo.autoindent = false, 0, "", false
  vim.api.nvim_feedkeys(vim.keycode("<Esc>o"), "nt", false)
  sleep(300)
  out.ghost_when_disabled = ghost() or vim.NIL
  vim.api.nvim_feedkeys(vim.keycode("<Tab>") .. "x", "mt", false)
  sleep(200)
  out.fallback_line = line(last + 1)
  out.buffer = vim.api.nvim_buf_get_lines(0, 0, -1, true)
  finish(nil)
end

co = coroutine.create(function()
  local ok, err = xpcall(main, debug.traceback)
  if not ok then
    finish(err)
  end
end)
vim.schedule(function()
  coroutine.resume(co)
end)
