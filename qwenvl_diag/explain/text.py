"""What a pasted text is made of, line by line: the noise around each line (colour codes, HTML entities,
no-break spaces, Markdown escapes and quotes of a rendered page, torchrun's `[rank3]:` and Ray's
`(pid=..)` prefixes, logging timestamps and levels, rich's box borders) taken off, so that a traceback
reads the same however it was printed; and its words spaced from Chinese prose (`spaced`)."""

from __future__ import annotations

import html
import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_PREFIXES = (
    re.compile(r"^\[(?:rank|Rank|RANK)\s*\d+\]:?\s?"),  # torchrun / DeepSpeed: "[rank3]: "
    re.compile(r"^\(\w+ pid=\d+(?:, ip=[\d.]+)?\)\s?"),  # Ray workers: "(RayWorkerWrapper pid=12) "
    # logging: "2025-03-01 10:00:00,123 - root - ERROR - ", "[2025-03-01 10:00:00] ERROR: "
    re.compile(
        r"^\[?\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[,.]\d+)?\]?"
        r"(?:\s*[-|]?\s*(?:[\w.]+\s*[-|:]\s*)??(?:INFO|ERROR|WARNING|WARN|DEBUG|CRITICAL)\b)?\s*[-|:]?\s?"
    ),
    re.compile(r"^(?:INFO|ERROR|WARNING|WARN|DEBUG|CRITICAL):[\w.]*:"),  # logging's default "ERROR:root:"
    re.compile(r"^\d+:\s(?=\s*(?:File|Traceback|\w+Error))"),  # "0: " rank prefixes of some launchers
    # a Markdown quote of someone's paste ("> ", "> > "), unless it is rich's arrow at a line ("> 1687 ...")
    re.compile(r"^ {0,3}>(?: ?>)* ?(?!\s*\d+\s)"),
)
# the spaces a rendered page or a word processor puts in a copy (no-break, thin, ideographic) read as spaces
_SPACES = str.maketrans(dict.fromkeys([0xA0, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000], " "))


# rich's boxed tracebacks (`accelerate launch`, typer CLIs): "│ <content> │"
_BOX = re.compile(r"^\s*[│┃]\s?(?P<content>.*?)\s*[│┃]\s*$")


def clean_line(line: str) -> str:
    """`line` without colour codes, HTML entities, Markdown's escapes of `_` and quote marks, the prefixes
    launchers and loggers put before each line, and the borders of rich's boxed tracebacks; a page's
    no-break and other wide spaces read as spaces."""
    line = _ANSI.sub("", line).rstrip("\r\n").translate(_SPACES)
    # copied from a rendered page: HTML entities ("&gt;", "&#39;") and Markdown's escaped underscores
    # ("wrapper\\_CUDA\\_\\_index\\_select") read as the text printed them
    line = html.unescape(line).replace("\\_", "_") if "&" in line or "\\_" in line else line
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            stripped = prefix.sub("", line, count=1)
            if stripped != line:
                line, changed = stripped, True
    if box := _BOX.match(line):
        line = box["content"]
    return line


# a traceback frame as Python prints it (`facts` reads its parts; `rebroken` finds frames run together)
PLAIN_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>[\w.<>]+)')
# a traceback kept inside a string (a JSON log line, a `repr`): its line breaks written `\n`
_ESCAPED_TRACEBACK = re.compile(r'Traceback \(most recent call last\):\\n|\\n\s*File \\?"')
_ESCAPES = {"\\n": "\n", "\\t": "\t", '\\"': '"', "\\'": "'", "\\\\": "\\"}


def as_printed(text: str) -> str:
    """`text` as Python printed it: a traceback kept in a string (a JSON log line's `"...\\n  File
    \\"/x.py\\", line 3..."`, a `repr`) has its escapes undone; any other text is returned as it is."""
    if not _ESCAPED_TRACEBACK.search(text):
        return text
    return re.sub(r"\\[nt\"'\\]", lambda match: _ESCAPES[match.group()], text)


def clean_lines(text: str) -> list[str]:
    """The lines of `text` (a hard wrap at a fixed width undone, `unfolded`; a traceback run into one line
    broken again, `rebroken`), each cleaned (`clean_line`)."""
    return [clean_line(line) for line in rebroken(unfolded(text.replace("\r\n", "\n").split("\n")))]


# a table's row (nvidia-smi's, rich's boxes): its lines share a width by design, never wrapped
_TABLE_ROW = re.compile(r"^\s*[|+│┃║╭╰┏┗╔╚]|[|+│┃║╮╯┓┛╗╝]\s*$")
_FOLD_WIDTH, _FOLDS = 60, 3
_IN_WORD = re.compile(r"[\w./\\-]{2}")


def unfolded(lines: list[str]) -> list[str]:
    """`lines` with a hard wrap undone: where at least three lines (outside tables) have the same length
    of 60 or more, none is longer and one of them is cut inside a word (a name, a path), the text was cut
    at that width (a terminal's or a log viewer's), and each line of that width runs on into the next.
    Lines that share a width by themselves (progress bars) end at a word's end."""
    prose = [len(line) for line in lines if not _TABLE_ROW.search(line)]
    width = max(prose, default=0)
    if width < _FOLD_WIDTH or prose.count(width) < _FOLDS:
        return lines
    pairs = zip(lines, [*lines[1:], ""], strict=True)
    if not any(len(line) == width and _IN_WORD.match(line[-1] + after[:1]) for line, after in pairs):
        return lines
    joined: list[str] = []
    runs_on = False
    for line in lines:
        if runs_on:
            joined[-1] += line
        else:
            joined.append(line)
        runs_on = len(line) == width and not _TABLE_ROW.search(line)
    return joined


_ERROR_NAME = re.compile(r"\s+(?=(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception):\s)")


def rebroken(lines: list[str]) -> list[str]:
    """`lines` with a traceback that lost its line breaks (a chat message, a form's one-line field) broken
    again: a line holding two frames or more is cut before each frame, after each frame's head (the code
    follows it) and before the exception's name."""
    broken: list[str] = []
    for line in lines:
        heads = list(PLAIN_FRAME.finditer(line))
        if len(heads) < 2:
            broken.append(line)
            continue
        pieces = [line[: heads[0].start()]]
        for head, after in zip(heads, [*heads[1:], None], strict=True):
            code, *error = _ERROR_NAME.split(
                line[head.end() : after.start() if after else len(line)].strip(), 1
            )
            pieces += [f"  {head.group()}", f"    {code}", *error]
        broken += [piece for piece in pieces if piece.strip()]
    return broken


# where the code of a frame lives: torch and accelerate (the op's machinery, never the cause) or transformers
INTERNALS = re.compile(r"[/\\](?:torch|torch_npu|intel_extension_for_pytorch|accelerate)[/\\]")
IN_TRANSFORMERS = re.compile(r"[/\\]transformers[/\\]")


_INSTALLED = re.compile(r"[/\\](?:site|dist)-packages[/\\](?P<package>[A-Za-z_][\w.-]*)")
_EGG = re.compile(r"-\d[\w.-]*\.egg$")


def installed_package(path: str) -> str | None:
    """The package an installed file sits in (the folder after site-packages; a module's name without
    ".py", an egg's without its version), or None: ".../site-packages/veomni/models/x.py" -> "veomni",
    ".../site-packages/transformers-4.45.2-py3.10.egg/transformers/..." -> "transformers"."""
    match = _INSTALLED.search(path)
    return _EGG.sub("", match["package"].removesuffix(".py")) if match else None


def raising_frame(frames: list[dict]) -> dict | None:
    """The deepest frame outside torch and accelerate: the code that handed the op its tensors."""
    return next((frame for frame in reversed(frames) if not INTERNALS.search(frame["file"])), None)


# Chinese, Japanese and Korean characters (and full-width forms) are word characters to `\b`, so a name
# written against them ("rope_deltas张量", "使用zero3训练") has no word boundary; `spaced` puts one there
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef"
_CJK_EDGE = re.compile(rf"(?<=[{_CJK}])(?=[A-Za-z0-9_`])|(?<=[A-Za-z0-9_`])(?=[{_CJK}])")


def spaced(text: str) -> str:
    """`text` with a space wherever a CJK character meets a Latin letter, digit or underscore, so that
    words read the same in Chinese prose as in English: "执行masked_scatter操作" -> "执行 masked_scatter
    操作"."""
    return _CJK_EDGE.sub(" ", text)
