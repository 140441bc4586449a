"""Property-based fuzzing of the public entry points with ``hypothesis``: generated model
names and URIs, ``config.json`` documents, safetensors headers, shard index files and zip
members. Every failure must be a ``HubLoaderError`` (never another exception), no call may
hang (one still running after 10 s is interrupted and fails), and no file may appear outside
the cache (``HUBLOADER_HOME``) or the target folder.

The example counts are written to the terminal at the end of the module (with or without
``-s``); together they are at least :data:`MIN_TOTAL` per run. Examples are derandomized so
that CI runs are reproducible.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hubloader
from hubloader.errors import HubLoaderError

MIN_TOTAL = 2000
SLOW_EXAMPLE_S = 10.0  # a call still running after this long counts as a hang
COUNTS: dict[str, int] = {}


def fuzz_settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    total = sum(COUNTS.values())
    line = "fuzz examples: " + ", ".join(f"{k} {v}" for k, v in COUNTS.items()) + f"; total {total}"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is not None:  # shown with or without -s
            reporter.write_line("")
            reporter.write_line(line)
        else:  # pragma: no cover - running without the terminal plugin
            print(line)


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """The only places a fuzzed call may write: ``home`` (the cache) and ``dest`` (targets).
    ``cwd`` holds the inputs; ``outside`` holds a file no call may touch."""
    root = tmp_path_factory.mktemp("fuzz")
    for name in ("home", "cwd", "dest", "outside"):
        (root / name).mkdir()
    (root / "outside" / "precious").write_text("keep")
    return root


@pytest.fixture
def in_arena(arena, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HOME", str(arena / "home"))
    monkeypatch.setenv("HUBLOADER_MAX_PARAM_BYTES", str(4 << 20))  # big configs refuse fast
    monkeypatch.setenv("HUBLOADER_MAX_RETRIES", "1")
    for name in ("HUBLOADER_S3_ENDPOINT_URL", "HUBLOADER_HF_ENDPOINT", "HF_ENDPOINT",
                 "HUBLOADER_ENDPOINT", "HUBLOADER_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(arena / "cwd")
    yield arena
    _assert_nothing_outside(arena)


def _assert_nothing_outside(arena: Path) -> None:
    allowed = (arena / "home", arena / "cwd", arena / "dest")
    for path in arena.rglob("*"):
        if path.is_file() and not any(a in path.parents for a in allowed):
            assert path == arena / "outside" / "precious", f"written outside: {path}"
    assert (arena / "outside" / "precious").read_text() == "keep"


def _count(kind: str) -> None:
    COUNTS[kind] = COUNTS.get(kind, 0) + 1


class Hang(BaseException):
    """Raised by the alarm inside a call that runs too long (a BaseException, so that no
    ``except Exception`` in the code under test can swallow it)."""


def _alarm(signum, frame):
    raise Hang(f"a call ran for more than {SLOW_EXAMPLE_S} s")


def _run(kind: str, call) -> object:
    """Call ``call``; anything but success or a HubLoaderError fails the example, and so
    does a call still running after SLOW_EXAMPLE_S (interrupted by SIGALRM)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, SLOW_EXAMPLE_S)
    try:
        return call()
    except HubLoaderError:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- names and URIs -------------------------------------------------------------------------
SPECIAL_NAMES = ["", " ", ".", "..", "*", "?", "[a]", "~", "/", "\\", "s3://", "s3:///", "s3:// /x",
                 "hf://", "hf://@", "hf://a/b/c", "hf://org/re po", "file://", "http://x/y",
                 "x" * 5000, "a/" * 600, "\x00", "bert-base-en", "BERT-BASE-EN", "s3://b/../x",
                 "s3://b/p\\..\\q", "hf://org/repo@", "hf://org/repo@v1@v2", "./", "../..",
                 "s3://bucket/" + "k" * 250, "💥", "s3://b/%00", "file:///nonexistent/dir"]
_uri = st.builds(lambda scheme, rest: f"{scheme}://{rest}",
                 st.sampled_from(["s3", "hf", "file", "S3", "ftp", "gs"]),
                 st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
                         max_size=60))
_path_like = st.lists(st.sampled_from(["a", "..", ".", "", "b c", "~", "*", "x" * 120]),
                      max_size=6).map("/".join)
NAMES = st.one_of(st.sampled_from(SPECIAL_NAMES), st.text(max_size=80), _uri, _path_like,
                  st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True))


@fuzz_settings(700)
@given(name=NAMES)
def test_names_and_uris(in_arena, name):
    _count("names")
    from hubloader.hub.cache_admin import remove_from_cache, verify_cache

    _run("names", lambda: hubloader.parse_model_name(name))
    _run("names", lambda: hubloader.download(name, offline=True))
    _run("names", lambda: hubloader.download(name, offline=True,
                                             download_path=in_arena / "dest" / "flat"))
    _run("names", lambda: remove_from_cache(name))
    _run("names", lambda: verify_cache(name=name))


# -- config.json documents ------------------------------------------------------------------
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 64), st.integers(), st.sampled_from([10**30, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.text(max_size=12))
_value = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner,
                                                                       max_size=4)), max_leaves=8)
_FIELDS = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
           "intermediate_size", "max_position_embeddings", "hidden_dropout_prob",
           "attention_probs_dropout_prob", "layer_norm_eps", "layer_norm_epsilon",
           "initializer_range", "num_labels", "n_embd", "n_layer", "n_head", "n_positions",
           "d_model", "d_ff", "num_layers", "num_heads", "d_kv", "dropout_rate", "image_size",
           "patch_size", "num_channels", "hidden_sizes", "depths", "id2label", "label2id",
           "torch_dtype", "architectures", "tie_word_embeddings", "pooling", "problem_type"]
_TINY = {"vocab_size": 32, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
         "intermediate_size": 8, "max_position_embeddings": 16, "n_embd": 8, "n_layer": 1,
         "n_head": 2, "n_positions": 16, "d_model": 8, "d_ff": 8, "num_layers": 1,
         "num_heads": 2, "d_kv": 4, "image_size": 8, "patch_size": 4, "num_channels": 3,
         "hidden_sizes": [4, 4], "depths": [1, 1], "embedding_size": 4}
CONFIGS = st.builds(
    lambda model_type, changes: json.dumps({"model_type": model_type, **_TINY, **changes}),
    st.sampled_from(["bert", "roberta", "gpt2", "t5", "vit", "resnet", "BERT", "llama", "", 5]),
    st.dictionaries(st.sampled_from(_FIELDS), _value, max_size=4))
RAW_CONFIGS = st.one_of(
    st.text(max_size=60),
    st.integers(1, 3000).map(lambda d: '{"model_type": "bert", "x": ' + "[" * d + "]" * d + "}"),
    st.integers(1, 6000).map(lambda n: '{"model_type": "bert", "hidden_size": ' + "9" * n + "}"),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


@fuzz_settings(350)
@given(text=st.one_of(CONFIGS, CONFIGS, CONFIGS, RAW_CONFIGS))
def test_config_documents(in_arena, text):
    _count("configs")
    from hubloader.models import BertModel

    path = in_arena / "cwd" / "config.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _run("configs", lambda: hubloader.BaseModel.init_from_json(path))
    _run("configs", lambda: BertModel.init_from_json(path, num_hidden_layers=1))


# -- safetensors headers --------------------------------------------------------------------
_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "X", "", 7]
_entry = st.fixed_dictionaries(
    {"dtype": st.sampled_from(_DTYPES),
     "shape": st.one_of(st.lists(st.one_of(st.integers(0, 4), st.integers(-2, 2**64)), max_size=4),
                        _scalar),
     "data_offsets": st.one_of(st.tuples(st.integers(0, 80), st.integers(0, 80)).map(list),
                               st.lists(st.integers(-5, 2**64), max_size=3), _scalar)})
HEADERS = st.one_of(
    st.dictionaries(st.text(max_size=6), st.one_of(_entry, _entry, _scalar), max_size=4)
    .map(lambda h: json.dumps(h).encode()),
    st.binary(max_size=40))


@fuzz_settings(600)
@given(header=HEADERS, data_len=st.integers(0, 80), claimed=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_safetensors_headers(in_arena, header, data_len, claimed):
    _count("safetensors")
    from hubloader.load.weights import read_safetensors

    n = len(header) if claimed is None else claimed
    path = in_arena / "cwd" / "model.safetensors"
    path.write_bytes(struct.pack("<Q", n) + header + bytes(data_len))
    tensors = _run("safetensors", lambda: read_safetensors(path))
    for tensor in (tensors or {}).values():  # views must stay inside the file's bytes
        assert tensor.numel() * tensor.element_size() <= data_len


# -- shard index files ----------------------------------------------------------------------
_shard_name = st.one_of(st.sampled_from(["a.safetensors", "b.safetensors", "../x.safetensors",
                                         "/etc/passwd", "", ".", "sub/../a.safetensors",
                                         "missing.safetensors", "a.safetensors\x00"]),
                        st.text(max_size=20), _scalar)
INDEXES = st.one_of(
    st.fixed_dictionaries({"weight_map": st.dictionaries(st.text(max_size=6), _shard_name,
                                                         max_size=4)}).map(json.dumps),
    st.fixed_dictionaries({"weight_map": _value}).map(json.dumps),
    st.text(max_size=40))


@fuzz_settings(250)
@given(index=INDEXES, fmt=st.sampled_from(["model.safetensors.index.json",
                                           "pytorch_model.bin.index.json"]))
def test_shard_index_files(in_arena, index, fmt):
    _count("indexes")
    from safetensors.torch import save_file

    from hubloader.load.weights import find_weight_files, read_state_dict

    import torch

    folder = in_arena / "cwd" / "model"
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()
    folder.mkdir(exist_ok=True)
    save_file({"w": torch.zeros(2)}, folder / "a.safetensors")
    (folder / "b.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (folder / fmt).write_text(index)
    files = _run("indexes", lambda: find_weight_files(folder))
    if files is not None:
        assert all(folder in Path(f).resolve().parents for f in files.files)
        _run("indexes", lambda: read_state_dict(files))


# -- zip members ----------------------------------------------------------------------------
_member = st.one_of(st.sampled_from(["a", "a/b", "a/", "A", "../evil", "/abs", "c:\\x", "x\\..\\y",
                                     "./z", "d//e", "config.json", "", "\x00", "a/b/c"]),
                    st.text(max_size=12))
MEMBERS = st.lists(st.tuples(_member, st.binary(max_size=64),
                             st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])),
                   max_size=6)


@fuzz_settings(350)
@given(members=MEMBERS)
def test_zip_members(in_arena, members):
    _count("zips")
    from hubloader.packages.packaging import extract_zip

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names are part of the input
        for name, data, method in members:
            try:
                zf.writestr(zipfile.ZipInfo(name) if name else zipfile.ZipInfo("x"), data,
                            compress_type=method)
            except (ValueError, UnicodeEncodeError):  # names the zip module itself cannot write
                continue
    src = in_arena / "cwd" / "pkg.zip"
    src.write_bytes(buf.getvalue())
    dest = in_arena / "dest" / "out"
    _run("zips", lambda: extract_zip(src, dest))
    if dest.exists():
        for p in dest.rglob("*"):
            assert dest in p.resolve().parents
        for p in sorted(dest.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        dest.rmdir()


# -- prefetch arguments ---------------------------------------------------------------------
_WRONG = st.one_of(st.binary(max_size=20), st.integers(), st.floats(allow_nan=False),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                         st.integers(), max_size=2),
                   st.builds(Path, st.text(max_size=10)))


@fuzz_settings(150)
@given(which=st.sampled_from(["model_name", "revision", "allow_patterns", "offline",
                              "download_path"]),
       wrong=_WRONG, name=NAMES)
def test_prefetch_arguments_of_the_wrong_type(in_arena, which, wrong, name):
    """A prefetch with an argument of the wrong type is refused, typed, before any child
    process starts (a Path is a fine model_name or download_path)."""
    from hubloader.hub import inflight

    _count("prefetch args")
    kwargs = {"model_name": name, which: wrong}
    if which in ("model_name", "download_path") and isinstance(wrong, Path):
        kwargs[which] = 5
    if which == "download_path" and isinstance(kwargs[which], str):
        kwargs[which] = 5
    before = dict(inflight._INFLIGHT)
    with pytest.raises(HubLoaderError) as info:
        hubloader.prefetch(**kwargs)
    assert isinstance(info.value, (TypeError, ValueError))
    assert inflight._INFLIGHT == before


@fuzz_settings(6)
@given(name=NAMES)
def test_prefetch_of_any_name_answers_typed(in_arena, name):
    """Whatever the name, an offline prefetch answers at its join: a directory or a typed
    error, never a hang or a bare exception."""
    _count("prefetch names")

    def call():
        return hubloader.prefetch(name, offline=True, progress=False).result(timeout=60)

    _run("prefetch", call)


# -- the command line -----------------------------------------------------------------------
_ARGS = st.one_of(NAMES, st.sampled_from(["-q", "--revision", "-v", "--offline", "--json",
                                          "--allow-patterns", "*", "--", "-", "--help"]))


@fuzz_settings(120)
@given(command=st.sampled_from([["download"], ["info"], ["validate"], ["cache", "ls"],
                                ["cache", "verify"], ["cache", "rm"], ["ls"]]),
       args=st.lists(_ARGS, max_size=4))
def test_cli_entry_points(in_arena, monkeypatch, capsys, command, args):
    """Every fuzzed command line ends with an exit status and a one-line error at most: no
    traceback, no hang, nothing written outside the cache (offline, so nothing is fetched)."""
    from hubloader import cli

    _count("cli")
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")

    def call():
        try:
            return cli.main(command + args)
        except SystemExit as err:  # argparse: a usage error or --help
            return err.code

    code = _run("cli", call)
    out, err = capsys.readouterr()
    assert code in (0, 1, 2, None), code
    assert "Traceback" not in err, err


# -- chat templates -------------------------------------------------------------------------
_PIECES = st.sampled_from([
    "{% for m in messages %}", "{% endfor %}", "{% for i in range(N) %}", "{{ m.content }}",
    "{{ m['role'] }}", "{% if add_generation_prompt %}", "{% endif %}", "{{ 'x' * N }}",
    "{{ N ** N }}", "{{ messages | tojson }}", "{% set x = N %}", "{{ x / 0 }}",
    "{{ raise_exception('no') }}", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ messages[N] }}", "{{ loop.index }}", "{{ bos_token }}", "{{", "}}", "{%", "%}",
    "{{ m.content.__class__ }}", "{{ ''.__class__.__mro__ }}", "{{ cycler }}", "text",
])
_TEMPLATES = st.lists(st.tuples(_PIECES, st.sampled_from(["0", "1", "7", "99999", "2"])),
                      max_size=8).map(lambda parts: "".join(p.replace("N", n) for p, n in parts))


@fuzz_settings(300)
@given(template=st.one_of(_TEMPLATES, st.text(max_size=60)),
       content=st.text(max_size=20))
def test_chat_templates(in_arena, monkeypatch, template, content):
    """Any template renders to text or raises ChatTemplateError, within its time bound."""
    from hubloader.errors import ChatTemplateError
    from hubloader.text.chat_template import render_chat_template

    _count("chat templates")
    monkeypatch.setenv("HUBLOADER_CHAT_TEMPLATE_TIMEOUT", "0.5")
    monkeypatch.setenv("HUBLOADER_CHAT_TEMPLATE_MAX_CHARS", "200000")

    def call():
        try:
            out = render_chat_template(template, [{"role": "user", "content": content}],
                                       bos_token="<s>")
        except ChatTemplateError as err:
            assert isinstance(err, ValueError)
            raise
        assert isinstance(out, str) and len(out) <= 200000
        return out

    _run("chat template", call)


def test_example_count():
    """Runs last in this module: the examples above add up to the promised count."""
    assert sum(COUNTS.values()) >= MIN_TOTAL, COUNTS
