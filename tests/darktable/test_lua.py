"""The plugin's Lua on its own (plain lua5.4, no darktable): it compiles, sets no globals, parses JSON."""

import json
import re
import subprocess

import pytest

from imagecluster.images import IMAGE_SUFFIXES, RAW_SUFFIXES
from imagecluster.plugin_api._darktable import plugin_source

pytestmark = pytest.mark.darktable

# Loads the plugin with a stand-in "darktable" module that has no GUI (as
# darktable-cli), then decodes each line of stdin and prints the result as JSON
# (strings as \uXXXX-free UTF-8) or "ERROR <why>".
DECODE = r"""
package.preload.darktable = function()
  return { configuration = { api_version_major = 9, has_gui = false } }
end
local plugin = dofile(arg[1])
local function encode(v)
  if type(v) == "table" then
    local parts, n = {}, 0
    for _ in pairs(v) do n = n + 1 end
    if n == #v then
      for i = 1, #v do parts[i] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = encode(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif v == nil then
    return "null"
  end
  return tostring(v)
end
for line in io.lines() do
  local value, why = plugin.decode_json(line)
  if why then print("ERROR " .. why) else print(encode(value)) end
end
"""


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lua")
    (folder / "decode.lua").write_text(DECODE)
    path = folder / "imagecluster.lua"
    path.write_text(plugin_source(), encoding="utf-8")
    return path


def test_compiles_and_sets_no_globals(plugin_file):
    result = subprocess.run(["luac5.4", "-p", "-l", plugin_file], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assigned = [line for line in result.stdout.splitlines() if "SETTABUP" in line and "_ENV" in line]
    assert not assigned, "the plugin assigns globals:\n" + "\n".join(assigned)


def decode(plugin_file, *texts):
    result = subprocess.run(
        ["lua5.4", plugin_file.parent / "decode.lua", plugin_file], input="\n".join(texts) + "\n",
        capture_output=True, encoding="utf-8",
    )
    assert result.returncode == 0, result.stderr
    return [line if line.startswith("ERROR ") else json.loads(line) for line in result.stdout.splitlines()]


def test_decodes_what_remote_prints_and_any_escapes(plugin_file):
    document = {
        "sim": 0.7,
        "clusters": [["/photos/café_ß.jpg", "/photos/🐱 \"l'été\"\\.jpg"], ["/a/b.jpg", "/a/c.jpg"]],
        "trees": ["/photos/clusters"],
    }
    utf8, escaped = json.dumps(document, ensure_ascii=False), json.dumps(document, ensure_ascii=True, indent=2)
    assert "\\u00e9" in escaped and "\\ud83d\\udc31" in escaped  # é and a surrogate pair for 🐱
    assert decode(plugin_file, utf8, escaped.replace("\n", " ")) == [document, document]


def test_decodes_every_json_value(plugin_file):
    text = '{"n": -12.5e-1, "i": 3, "t": true, "f": false, "z": null, "e": [], "o": {}, "s": "a\\/b\\t\\u0041"}'
    [value] = decode(plugin_file, text)
    assert value == {"n": -1.25, "i": 3, "t": True, "f": False, "e": [], "o": [], "s": "a/b\tA"}


@pytest.mark.parametrize("bad", [
    "", "not json", "{", '{"clusters": [1, 2,]}', '{"a" 1}', '["x"] trailing', '"\\ud83d"', '"\\x"', '"\\u12g4"',
    '"unterminated',
])
def test_rejects_what_is_not_json(plugin_file, bad):
    [answer] = decode(plugin_file, bad)
    assert isinstance(answer, str) and answer.startswith("ERROR ") and " at byte " in answer


def test_its_raw_and_photo_endings_are_imagecluster_s():
    """The plugin pairs a RAW with a JPEG by file ending; its lists must be the ones imagecluster reads."""
    source = plugin_source()

    def endings(name):
        match = re.search(name + r' = words\(((?:\s*"[^"]*"\s*\.?\.?)+)\)', source)
        assert match, name
        return {"." + word for word in "".join(re.findall(r'"([^"]*)"', match.group(1))).split()}

    assert endings("RAW_ENDINGS") == RAW_SUFFIXES
    assert endings("PHOTO_ENDINGS") == IMAGE_SUFFIXES - RAW_SUFFIXES
