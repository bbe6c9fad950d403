--[[
imagecluster for darktable: tag each group of similar photos "imagecluster|cluster NNN",
so the groups can be browsed in the collections module (tag > imagecluster).

The imagecluster daemon keeps the photo folders fingerprinted; this script runs
`imagecluster remote cluster --sim SIM --json` and tags every photo of cluster N
that is in darktable's library (matched by full path), after deleting the tags
of the previous run. Clusters are numbered as the daemon sends them, largest first.

Installed by `imagecluster install-darktable-plugin` (lua/contrib/ and luarc).
The button: lighttable, selected image[s] module, "cluster similar"; the sim is
in preferences > lua options. IMAGECLUSTER_DARKTABLE_COMMAND replaces the
leading "imagecluster" of the command (a shell command prefix, such as
"/opt/venv/bin/imagecluster"); tests point it at a stand-in.
Scripts run what the button runs: require("contrib/imagecluster").cluster(0.7)
]]

local dt = require "darktable"

local MODULE = "imagecluster"
local TAG_PREFIX = "imagecluster|cluster "
local OWN_TAG = "^imagecluster|cluster %d+$"
local COMMAND_VARIABLE = "IMAGECLUSTER_DARKTABLE_COMMAND"
local DEFAULT_COMMAND = "imagecluster"
local DEFAULT_SIM = 0.7
-- `imagecluster remote` exit status: the daemon is not running and not installed.
local EXIT_NOT_AVAILABLE = 3
-- The shell's: command not found, found but not executable.
local EXIT_NOT_FOUND = 127
local EXIT_NOT_EXECUTABLE = 126

local imagecluster = {}

local LITERALS = { ["true"] = true, ["false"] = false }
local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

-- The JSON text decoded to Lua values (null becomes nil), or nil and why not.
-- `imagecluster remote` prints UTF-8, but \uXXXX escapes (and surrogate
-- pairs) are decoded too, as any JSON writer may use them.
local function decode_json(text)
  local pos = 1
  local value

  local function fail(what)
    error({ json = what .. " at byte " .. pos }, 0)
  end

  local function skip_space()
    pos = text:find("[^ \t\r\n]", pos) or #text + 1
  end

  local function hex4(at)
    local digits = text:match("^%x%x%x%x", at)
    if not digits then
      pos = at
      fail("bad \\u escape")
    end
    return tonumber(digits, 16)
  end

  local function decode_string()
    pos = pos + 1
    local parts = {}
    while true do
      local stop = text:find('["\\%c]', pos)
      if not stop then
        fail("unterminated string")
      end
      parts[#parts + 1] = text:sub(pos, stop - 1)
      local c = text:sub(stop, stop)
      if c == '"' then
        pos = stop + 1
        return table.concat(parts)
      elseif c ~= "\\" then
        pos = stop
        fail("control character in string")
      end
      local kind = text:sub(stop + 1, stop + 1)
      if kind == "u" then
        local code = hex4(stop + 2)
        pos = stop + 6
        if code >= 0xD800 and code <= 0xDBFF and text:sub(pos, pos + 1) == "\\u" then
          local low = hex4(pos + 2)
          if low >= 0xDC00 and low <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
        end
        if code >= 0xD800 and code <= 0xDFFF then
          fail("unpaired surrogate in \\u escape")
        end
        parts[#parts + 1] = utf8.char(code)
      elseif ESCAPES[kind] then
        parts[#parts + 1] = ESCAPES[kind]
        pos = stop + 2
      else
        pos = stop
        fail("bad escape")
      end
    end
  end

  local function decode_number()
    local number = text:match("^-?%d+", pos)
    if not number then
      fail("unexpected character")
    end
    local rest = pos + #number
    local fraction = text:match("^%.%d+", rest) or ""
    rest = rest + #fraction
    local exponent = text:match("^[eE][-+]?%d+", rest) or ""
    pos = rest + #exponent
    return tonumber(number .. fraction .. exponent)
  end

  local function decode_list(close, item)
    pos = pos + 1
    skip_space()
    if text:sub(pos, pos) == close then
      pos = pos + 1
      return
    end
    while true do
      item()
      skip_space()
      local c = text:sub(pos, pos)
      pos = pos + 1
      if c == close then
        return
      elseif c ~= "," then
        pos = pos - 1
        fail("expected ',' or '" .. close .. "'")
      end
    end
  end

  function value()
    skip_space()
    local c = text:sub(pos, pos)
    if c == "{" then
      local object = {}
      decode_list("}", function()
        skip_space()
        if text:sub(pos, pos) ~= '"' then
          fail("expected a string key")
        end
        local key = decode_string()
        skip_space()
        if text:sub(pos, pos) ~= ":" then
          fail("expected ':'")
        end
        pos = pos + 1
        object[key] = value()
      end)
      return object
    elseif c == "[" then
      local array, n = {}, 0
      decode_list("]", function()
        n = n + 1
        array[n] = value()
      end)
      return array
    elseif c == '"' then
      return decode_string()
    end
    local word = text:match("^%a+", pos)
    if word == "true" or word == "false" or word == "null" then
      pos = pos + #word
      return LITERALS[word] -- null is nil
    end
    return decode_number()
  end

  local ok, result = pcall(function()
    skip_space()
    if pos > #text then
      fail("no JSON text")
    end
    local decoded = value()
    skip_space()
    if pos <= #text then
      fail("trailing text")
    end
    return decoded
  end)
  if ok then
    return result
  elseif type(result) == "table" and result.json then
    return nil, result.json
  end
  error(result, 0)
end

local function shell_quote(text)
  return "'" .. text:gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local text = f:read("a")
  f:close()
  return text
end

-- The sim as `--sim` takes it: 0.7, not the 0.69999998807907 a float preference reads back as.
local function format_sim(sim)
  return string.format("%.4g", sim)
end

local function command_prefix()
  local command = os.getenv(COMMAND_VARIABLE)
  if command == nil or command:match("^%s*$") then
    return DEFAULT_COMMAND
  end
  return command
end

-- Run the command; returns stdout, stderr and the exit status (128 + n for signal n).
local function run(command)
  local errors = os.tmpname()
  local pipe = io.popen(command .. " 2>" .. shell_quote(errors), "r")
  local out = pipe:read("a")
  local _, how, code = pipe:close()
  local err = read_file(errors)
  os.remove(errors)
  if how == "signal" then
    code = 128 + code
  end
  return out, err, code
end

local function last_line(text)
  local line
  for each in text:gmatch("[^\n]+") do
    if each:match("%S") then
      line = each
    end
  end
  return line
end

-- The clusters (a list of lists of paths) at `sim`, or nil and a message for the user.
local function ask_daemon(sim)
  local prefix = command_prefix()
  local out, err, code = run(string.format("%s remote cluster --sim %s --json", prefix, format_sim(sim)))
  local document, why = decode_json(out)
  if code == EXIT_NOT_FOUND or code == EXIT_NOT_EXECUTABLE then
    return nil, string.format(
      "imagecluster is not installed: cannot run '%s' (install it, or set %s to its full path)",
      prefix, COMMAND_VARIABLE)
  elseif code ~= 0 then
    local message = type(document) == "table" and type(document.message) == "string" and document.message
      or last_line(err) or ("exit status " .. code)
    message = message:gsub("^imagecluster: error: ", "")
    if code == EXIT_NOT_AVAILABLE then
      return nil, "imagecluster: daemon not available: " .. message
    end
    return nil, "imagecluster failed: " .. message
  elseif document == nil then
    return nil, string.format("'%s remote cluster' printed no JSON (%s)", prefix, why)
  elseif type(document) ~= "table" or type(document.clusters) ~= "table" then
    return nil, string.format("'%s remote cluster' printed JSON without clusters", prefix)
  end
  for _, cluster in ipairs(document.clusters) do
    if type(cluster) ~= "table" then
      return nil, string.format("'%s remote cluster' printed a cluster that is not a list", prefix)
    end
  end
  return document.clusters
end

-- darktable's images by full path; a path holds several images when duplicated.
local function images_by_path()
  local images = {}
  for _, image in ipairs(dt.database) do
    local path = image.path .. "/" .. image.filename
    images[path] = images[path] or {}
    table.insert(images[path], image)
  end
  return images
end

-- Delete every "imagecluster|cluster NNN" tag; returns how many there were.
-- Deleting a tag detaches it and rewrites the XMP sidecar of each photo it was on.
local function remove_own_tags()
  local own = {}
  for _, tag in ipairs(dt.tags) do
    if tag.name:match(OWN_TAG) then
      own[#own + 1] = tag
    end
  end
  for _, tag in ipairs(own) do
    dt.tags.delete(tag)
  end
  return #own
end

local function count(n, noun)
  return string.format("%d %s%s", n, noun, n == 1 and "" or "s")
end

local function check_sim(sim)
  if sim == nil then
    local stored = dt.preferences.read(MODULE, "sim", "string")
    if stored == "" then
      return DEFAULT_SIM
    end
    return dt.preferences.read(MODULE, "sim", "float")
  end
  if type(sim) ~= "number" or sim ~= sim or sim < 0 or sim > 1 then
    return nil, "imagecluster: sim must be a number from 0 to 1, not " .. tostring(sim)
  end
  return sim
end

--- Tag the clusters at `sim` (default: the preference, else 0.7); what the button runs.
-- Returns {sim, clusters, tagged, not_in_library, removed, message}, or nil and a
-- message; either way the message is also shown as a toast. On failure no tag changes.
function imagecluster.cluster(sim)
  local message
  sim, message = check_sim(sim)
  if not sim then
    dt.print(message)
    return nil, message
  end
  local clusters
  clusters, message = ask_daemon(sim)
  if not clusters then
    message = message:match("^imagecluster") and message or "imagecluster: " .. message
    dt.print(message)
    return nil, message
  end
  local removed = remove_own_tags()
  local images = images_by_path()
  local tagged, not_in_library, used = 0, 0, 0
  for number, cluster in ipairs(clusters) do
    local tag
    for _, path in ipairs(cluster) do
      local found = images[path]
      if found then
        tag = tag or dt.tags.create(string.format("%s%03d", TAG_PREFIX, number))
        for _, image in ipairs(found) do
          dt.tags.attach(tag, image)
          tagged = tagged + 1
        end
      else
        not_in_library = not_in_library + 1
      end
    end
    if tag then
      used = used + 1
    end
  end
  if #clusters == 0 then
    message = string.format("imagecluster: no clusters at sim %s; try a lower sim", format_sim(sim))
  else
    message = string.format("imagecluster: %s tagged in %s at sim %s (tag imagecluster)",
      count(tagged, "photo"), count(used, "cluster"), format_sim(sim))
    if not_in_library > 0 then
      message = message .. string.format("; %s of the clusters %s not in darktable's library",
        count(not_in_library, "photo"), not_in_library == 1 and "is" or "are")
    end
  end
  dt.print(message)
  return {
    sim = sim, clusters = used, tagged = tagged, not_in_library = not_in_library,
    removed = removed, message = message,
  }
end

imagecluster.decode_json = decode_json

if dt.configuration.api_version_major < 9 then
  dt.print_error("imagecluster: needs darktable 4.2 or later (Lua API 9)")
elseif dt.configuration.has_gui then -- darktable-cli has no GUI; registering would hang it
  dt.preferences.register(MODULE, "sim", "float", "imagecluster: similarity (sim)",
    "photos at least this similar are grouped: 0.9 near-duplicates, 0.8 bursts, "
      .. "0.7 bursts and re-takes of the same scene or subject, 0.5 loosely related photos",
    DEFAULT_SIM, 0.0, 1.0, 0.05)
  dt.gui.libs.image.register_action(MODULE, "cluster similar",
    function()
      dt.print("imagecluster: clustering...")
      imagecluster.cluster()
    end,
    "tag each group of similar photos imagecluster|cluster NNN "
      .. "(all photos the imagecluster daemon watches; sim in preferences > lua options)")
  -- for darktable's script_manager: stop without a restart
  imagecluster.destroy = function()
    dt.gui.libs.image.destroy_action(MODULE)
  end
end

return imagecluster
