--[[
imagecluster for darktable: tag each group of similar photos "imagecluster|cluster NNN",
so the groups can be browsed in the collections module (tag > imagecluster).

The imagecluster daemon keeps the photo folders fingerprinted; this script runs
`imagecluster remote cluster --sim SIM --json` and tags every photo of cluster N
that is in darktable's library (matched by full path), after deleting the tags
of the previous run. Clusters are numbered as the daemon sends them, largest first.
A RAW + JPEG pair of one shot (same folder and name, e.g. IMG_0001.CR2 and
IMG_0001.JPG) is one entry in a cluster (the JPEG by default); both files get
the tag, also when darktable holds only the other one (the RAW).

Installed by `imagecluster install-darktable-plugin` (lua/contrib/ and luarc).
The button: lighttable, selected image[s] module, "cluster similar"; the sim is
in preferences > lua options. IMAGECLUSTER_DARKTABLE_COMMAND replaces the
leading "imagecluster" of the command (a shell command prefix, such as
"/opt/venv/bin/imagecluster"); tests point it at a stand-in.
Scripts run what the button runs: require("contrib/imagecluster").cluster(0.7)

Events mode (button "group by events"): `imagecluster remote cluster --by events`
groups the photos by when and where they were taken (EXIF time, GPS) and each
photo of event N (in time order) gets "imagecluster|event YYYY-MM-DD NNN";
require("contrib/imagecluster").events(0.7) from a script.
]]

local dt = require "darktable"

local MODULE = "imagecluster"
local TAG_PREFIX = "imagecluster|cluster "
local OWN_TAG = "^imagecluster|cluster %d+$"
local EVENT_PREFIX = "imagecluster|event "
local OWN_EVENT_TAG = "^imagecluster|event %d%d%d%d%-%d%d%-%d%d %d+$"
local COMMAND_VARIABLE = "IMAGECLUSTER_DARKTABLE_COMMAND"
local DEFAULT_COMMAND = "imagecluster"
local DEFAULT_SIM = 0.7
-- `imagecluster remote` exit status: the daemon is not running and not installed.
local EXIT_NOT_AVAILABLE = 3
-- The shell's: command not found, found but not executable.
local EXIT_NOT_FOUND = 127
local EXIT_NOT_EXECUTABLE = 126

local function words(text)
  local set = {}
  for word in text:gmatch("%S+") do
    set[word] = true
  end
  return set
end

-- File endings (lower case) as imagecluster reads them (imagecluster.images'
-- RAW_SUFFIXES and IMAGE_SUFFIXES; a test keeps them equal): a RAW file and
-- another photo with the same folder and name are one shot.
local RAW_ENDINGS = words("3fr arw cr2 cr3 crw dcr dng erf fff iiq kdc mef mos mrw nef nrw orf pef raf rw2 rwl sr2 srf "
  .. "srw x3f")
local PHOTO_ENDINGS = words("bmp gif heic heif jpe jpeg jpg png tif tiff webp")

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
-- With `events`: the events instead (each {name, date, photos, clusters, ...}).
local function ask_daemon(sim, events)
  local prefix = command_prefix()
  local out, err, code = run(string.format("%s remote cluster%s --sim %s --json", prefix,
    events and " --by events" or "", format_sim(sim)))
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
  elseif events then
    if type(document) ~= "table" or type(document.events) ~= "table" then
      return nil, string.format("'%s remote cluster --by events' printed JSON without events", prefix)
    end
    for _, event in ipairs(document.events) do
      if type(event) ~= "table" or type(event.photos) ~= "table" or type(event.date) ~= "string" then
        return nil, string.format("'%s remote cluster --by events' printed an event without photos", prefix)
      end
    end
    return document.events
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

-- A photo's shot (its path without the ending) and whether it is the RAW file;
-- nil for a file imagecluster does not read.
local function shot_of(path)
  local stem, ending = tostring(path):match("^(.*[^/])%.([^./]+)$")
  if not stem then
    return nil
  end
  ending = ending:lower()
  if RAW_ENDINGS[ending] then
    return stem, true
  elseif PHOTO_ENDINGS[ending] then
    return stem, false
  end
  return nil
end

-- darktable's images by full path (a path holds several images when
-- duplicated), and by shot: {path, raw, image} of each photo.
local function images_by_path()
  local images, shots = {}, {}
  for _, image in ipairs(dt.database) do
    local path = image.path .. "/" .. image.filename
    images[path] = images[path] or {}
    table.insert(images[path], image)
    local stem, raw = shot_of(path)
    if stem then
      shots[stem] = shots[stem] or {}
      table.insert(shots[stem], { path = path, raw = raw, image = image })
    end
  end
  return images, shots
end

-- The images to tag for one path of a cluster: its own, and those of its RAW
-- (or JPEG) partner, the other file of the same shot, unless the daemon listed
-- that file itself (then it is tagged as that entry says).
local function images_of_shot(path, images, shots, listed)
  local found = {}
  for _, image in ipairs(images[path] or {}) do
    found[#found + 1] = image
  end
  local stem, raw = shot_of(path)
  for _, other in ipairs(stem and shots[stem] or {}) do
    if other.raw ~= raw and not listed[other.path] then
      found[#found + 1] = other.image
    end
  end
  return found
end

-- Delete every tag matching `pattern` ("imagecluster|cluster NNN", or the event tags); returns how many.
-- Deleting a tag detaches it and rewrites the XMP sidecar of each photo it was on.
local function remove_own_tags(pattern)
  local own = {}
  for _, tag in ipairs(dt.tags) do
    if tag.name:match(pattern) then
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

-- Delete the tags matching `pattern`, then tag every photo of group N (a list of
-- paths) in darktable's library with `tag_name(N)`, both files of a RAW + JPEG shot.
-- Returns how many photos were tagged, how many paths are not in the library,
-- how many groups got a tag, and how many old tags were deleted.
local function tag_groups(groups, pattern, tag_name)
  local removed = remove_own_tags(pattern)
  local images, shots = images_by_path()
  local listed = {}
  for _, group in ipairs(groups) do
    for _, path in ipairs(group) do
      listed[path] = true
    end
  end
  local tagged, not_in_library, used = 0, 0, 0
  for number, group in ipairs(groups) do
    local tag
    for _, path in ipairs(group) do
      local found = images_of_shot(path, images, shots, listed)
      if #found > 0 then
        tag = tag or dt.tags.create(tag_name(number))
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
  return tagged, not_in_library, used, removed
end

-- The sim (checked, or the preference) and the daemon's clusters (or events) at it;
-- or nil and the message for the user, which is shown as a toast.
local function checked_answer(sim, events)
  local message
  sim, message = check_sim(sim)
  if not sim then
    dt.print(message)
    return nil, message
  end
  local answer
  answer, message = ask_daemon(sim, events)
  if not answer then
    message = message:match("^imagecluster") and message or "imagecluster: " .. message
    dt.print(message)
    return nil, message
  end
  return sim, answer
end

--- Tag the clusters at `sim` (default: the preference, else 0.7); what the button runs.
-- Returns {sim, clusters, tagged, not_in_library, removed, message}, or nil and a
-- message; either way the message is also shown as a toast. On failure no tag changes.
function imagecluster.cluster(sim)
  local clusters, message
  sim, clusters = checked_answer(sim)
  if not sim then
    return nil, clusters
  end
  local tagged, not_in_library, used, removed = tag_groups(clusters, OWN_TAG, function(number)
    return string.format("%s%03d", TAG_PREFIX, number)
  end)
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

--- Tag the events (time and place, see the header) at `sim`: what the "group by events" button runs.
-- Every photo of event N gets "imagecluster|event YYYY-MM-DD NNN" (the old event tags are deleted first).
-- Returns {sim, events, tagged, not_in_library, removed, message}, or nil and a message (no tag changes).
function imagecluster.events(sim)
  local events, message
  sim, events = checked_answer(sim, true)
  if not sim then
    return nil, events
  end
  local photos = {}
  for number, event in ipairs(events) do
    photos[number] = event.photos
  end
  local tagged, not_in_library, used, removed = tag_groups(photos, OWN_EVENT_TAG, function(number)
    return string.format("%s%s %03d", EVENT_PREFIX, events[number].date, number)
  end)
  message = string.format("imagecluster: %s tagged in %s (tag imagecluster|event)",
    count(tagged, "photo"), count(used, "event"))
  if not_in_library > 0 then
    message = message .. string.format("; %s of the events %s not in darktable's library",
      count(not_in_library, "photo"), not_in_library == 1 and "is" or "are")
  end
  dt.print(message)
  return {
    sim = sim, events = used, tagged = tagged, not_in_library = not_in_library,
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
  dt.gui.libs.image.register_action(MODULE .. "_events", "group by events",
    function()
      dt.print("imagecluster: grouping by events...")
      imagecluster.events()
    end,
    "tag the photos of each event (taken close in time and place) imagecluster|event DATE NNN "
      .. "(all photos the imagecluster daemon watches)")
  -- for darktable's script_manager: stop without a restart
  imagecluster.destroy = function()
    dt.gui.libs.image.destroy_action(MODULE)
    dt.gui.libs.image.destroy_action(MODULE .. "_events")
  end
end

return imagecluster
