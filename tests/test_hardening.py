"""What an adversarial pass over the command line found (issue 14): a checkpoint that
runs code, outputs that destroy data, tracebacks where one line was promised, and
messages that mislead. Each test failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_robustness import NER_RECIPE, _error_line, _ner_data, clf_ckpt, ner_files, tagger_ckpt

from seqnlp.checkpoints import load_system, read_checkpoint
from seqnlp.cli import main

__all__ = ["clf_ckpt", "ner_files", "tagger_ckpt"]  # module fixtures, shared


class Payload:
    """Pickled, it creates ``path`` when unpickled: what a planted checkpoint would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _plant(path: Path, tagger_ckpt: Path, marker: Path) -> Path:
    """A checkpoint that is a real seqnlp one plus a pickled payload."""
    real = torch.load(tagger_ckpt, weights_only=True)
    torch.save({**real, "extra": Payload(marker)}, path)
    return path


def _seqnlp(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqnlp", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)  # fmt: skip


# -- code execution ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "how", ["slurm pick-up", "--ckpt_path hpc", "--ckpt_path last", "fit --ckpt_path FILE",
            "test --ckpt_path FILE"],
)  # fmt: skip
def test_a_planted_checkpoint_runs_no_code_on_any_path(how, ner_files, tagger_ckpt, tmp_path):
    marker = tmp_path / "ran"
    root = tmp_path / "run"
    root.mkdir()
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # as people set it to load old files
    args = ["validate", NER_RECIPE, *_ner_data(ner_files, tmp_path),
            "--trainer.default_root_dir", str(root), "--trainer.logger", "false"]  # fmt: skip
    if how == "--ckpt_path last":
        planted = _plant(root / "last.ckpt", tagger_ckpt, marker)
        args += ["--ckpt_path", "last"]
    elif how.endswith("FILE"):
        planted = _plant(tmp_path / "resume.ckpt", tagger_ckpt, marker)
        args = [how.split()[0], *args[1:], "--ckpt_path", str(planted)]
    else:
        planted = _plant(root / "hpc_ckpt_1.ckpt", tagger_ckpt, marker)
        if how == "slurm pick-up":  # Lightning resumes from hpc_ckpt_N under SLURM by itself
            env.update(SLURM_NTASKS="1", SLURM_JOB_NAME="job", SLURM_NODELIST="localhost")
        else:
            args += ["--ckpt_path", "hpc"]
    run = _seqnlp(args, tmp_path, **env)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"seqnlp: error: {planted}: refused: it holds pickled objects")
    assert "GLOBAL io.open" in last and "\x1b" not in last
    assert not marker.exists()


def test_weights_only_false_is_refused(ner_files, tagger_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", NER_RECIPE, *_ner_data(ner_files, tmp_path), "--ckpt_path",
              str(tagger_ckpt), "--weights_only", "false"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "--weights_only false is refused" in _error_line(capsys)


@pytest.mark.parametrize("command", ["predict", "evaluate", "average", "attention"])
def test_every_checkpoint_command_refuses_a_payload(command, tagger_ckpt, tmp_path, capsys):
    marker = tmp_path / "ran"
    planted = _plant(tmp_path / "p.ckpt", tagger_ckpt, marker)
    src = tmp_path / "in.txt"
    src.write_text("Ana vive\n", encoding="utf-8")
    args = {
        "predict": ["predict", "--ckpt_path", str(planted), "--input", str(src)],
        "evaluate": ["evaluate", "--ckpt_path", str(planted), "--input", str(src)],
        "average": ["average", str(planted), str(tagger_ckpt), "--output", str(tmp_path / "a")],
        "attention": ["attention", "--ckpt_path", str(planted), "--source", "x", "--output",
                      str(tmp_path / "a.png")],
    }[command]  # fmt: skip
    with pytest.raises(SystemExit):
        main(args)
    assert "refused: it holds pickled objects" in _error_line(capsys)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda c: c["seqnlp"].pop("class_path"), "has no class_path"),
        (lambda c: c.update(seqnlp=["not", "a", "mapping"]), "is a list, not a mapping"),
        (lambda c: c["seqnlp"].update(class_path="seqnlp.nowhere.Tagger"), "not a seqnlp system"),
        (lambda c: c["hyper_parameters"].update(hidden_size=7), "weights do not fit"),
        (lambda c: c["hyper_parameters"].update(hidden_size="wide"), "do not build a tagging"),
        (lambda c: c["seqnlp"]["codec"].pop("words"), "its codec cannot be read"),
        (lambda c: c.update(state_dict={"a": 1}), "state_dict is not a mapping"),
    ],
)
def test_damaged_insides_are_one_line(damage, message, tagger_ckpt, tmp_path, capsys):
    ckpt = torch.load(tagger_ckpt, weights_only=True)
    damage(ckpt)
    path = tmp_path / "damaged.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=message):
        load_system(path)
    src = tmp_path / "in.txt"
    src.write_text("Ana\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(path), "--input", str(src)])
    assert message in _error_line(capsys)


def test_validate_with_weights_of_another_size_is_one_line(ner_files, tagger_ckpt, tmp_path,
                                                          capsys):  # fmt: skip
    ckpt = torch.load(tagger_ckpt, weights_only=True)
    ckpt["hyper_parameters"]["hidden_size"] = 7  # the weights are of size 16
    path = tmp_path / "other.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(SystemExit):
        main(["validate", NER_RECIPE, *_ner_data(ner_files, tmp_path), "--ckpt_path", str(path),
              "--trainer.logger", "false"])  # fmt: skip
    assert "weights do not fit this model" in _error_line(capsys)


# -- data loss -------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("via", ["same path", "symlink", "other spelling"])
def test_the_output_never_replaces_the_input(command, via, tagger_ckpt, tmp_path, capsys):
    src = tmp_path / "in.conll"
    text = "Ana B-PER\nvive O\n\n"
    src.write_text(text, encoding="utf-8")
    output = {"same path": src, "symlink": tmp_path / "link.conll",
              "other spelling": tmp_path / "sub" / ".." / "in.conll"}[via]  # fmt: skip
    (tmp_path / "sub").mkdir()
    if via == "symlink":
        output.symlink_to(src)
    with pytest.raises(SystemExit):
        main([command, "--ckpt_path", str(tagger_ckpt), "--input", str(src), "--output",
              str(output)])  # fmt: skip
    assert "would destroy the input" in _error_line(capsys)
    assert src.read_text(encoding="utf-8") == text


def _predict_to(ckpt: Path, output: Path | str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Ana vive en Lima\n", encoding="utf-8")
    main(["predict", "--ckpt_path", str(ckpt), "--input", str(src), "--output", str(output),
          "--no_progress"])  # fmt: skip


def test_the_output_is_written_through_a_symlink(tagger_ckpt, tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    _predict_to(tagger_ckpt, link, tmp_path)
    assert link.is_symlink() and json.loads(real.read_text(encoding="utf-8"))["tokens"][0] == "Ana"


def test_a_fifo_output_is_written_to_not_replaced(tagger_ckpt, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    _predict_to(tagger_ckpt, fifo, tmp_path)
    out, _ = reader.communicate(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and '"Ana"' in out
    _predict_to(tagger_ckpt, "/dev/null", tmp_path)  # never replaced, even as root
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_outputs_honour_the_umask_and_keep_an_existing_mode(tagger_ckpt, tmp_path):
    old = os.umask(0o022)
    try:
        _predict_to(tagger_ckpt, tmp_path / "new.jsonl", tmp_path)
        assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o644
        kept = tmp_path / "kept.jsonl"
        kept.write_text("", encoding="utf-8")
        kept.chmod(0o640)
        _predict_to(tagger_ckpt, kept, tmp_path)
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_sigterm_removes_the_partial_output_and_stale_ones_go_next_time(tagger_ckpt, tmp_path):
    src = tmp_path / "big.txt"
    src.write_text("Ana vive en Lima con Luis .\n" * 400_000, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    stale = tmp_path / ".out.jsonl.999999999.part"  # left by a killed run (no such process)
    stale.write_text("half", encoding="utf-8")
    run = subprocess.Popen([sys.executable, "-m", "seqnlp", "predict", "--ckpt_path",
                            str(tagger_ckpt), "--input", str(src), "--output", str(out),
                            "--no_progress"], cwd=tmp_path, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(f".out.jsonl.{run.pid}.part")):
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.2)
    assert not stale.exists()  # removed when the run began
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM
    assert not list(tmp_path.glob(".out.jsonl.*")) and not out.exists()


def test_an_unbalanced_csv_quote_is_an_error_at_its_line(tmp_path, clf_ckpt, capsys):
    from seqnlp.data.classification_readers import read_labelled_text

    path = tmp_path / "data.csv"
    rows = ["label,text", "1,fine", '0,"it has a 12"" screen', *(["1,ordinary"] * 40)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data.csv:3: a quoted CSV field opened on this line"):
        read_labelled_text(path, label_column="label", text_column="text")
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt_path", str(clf_ckpt), "--input", str(path), "--label_column",
              "label", "--text_column", "text"])  # fmt: skip
    assert "data.csv:3: a quoted CSV field" in _error_line(capsys)


@pytest.mark.parametrize("token", ["a\tb", "a\nb", "", " a", "-DOCSTART-"])
def test_conll_output_refuses_a_token_it_cannot_hold(token, tagger_ckpt, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"tokens": ["Ana", token]}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(tagger_ckpt), "--input", str(src), "--output",
              str(tmp_path / "out.conll")])  # fmt: skip
    assert "record 1: token 2" in _error_line(capsys)
    assert not (tmp_path / "out.conll").exists()


@pytest.mark.parametrize("text", ["a\tb", "a\rb", "a\x00b"])
def test_tsv_output_refuses_a_text_it_cannot_hold(text, clf_ckpt, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(clf_ckpt), "--input", str(src), "--output",
              str(tmp_path / "out.tsv")])  # fmt: skip
    assert "cannot be written as TSV" in _error_line(capsys)


# -- one-line errors -----------------------------------------------------------------------
def test_unwritable_outputs_are_one_line(tagger_ckpt, tmp_path, capsys):
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    (tmp_path / "a_dir").mkdir()
    cases = {tmp_path / "a_dir": "is a directory",
             tmp_path / "a_file" / "out.jsonl": "a file stands where a folder"}  # fmt: skip
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases[locked / "out.jsonl"] = "cannot write there"
    for output, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            _predict_to(tagger_ckpt, output, tmp_path)
        assert exit_info.value.code == 2 and message in _error_line(capsys)


def test_evaluate_creates_the_output_folder_and_fails_before_scoring(clf_ckpt, tmp_path, capsys):
    labelled = tmp_path / "test.txt"
    labelled.write_text("1 a good film\n0 a dull film\n", encoding="utf-8")
    out = tmp_path / "new" / "folder" / "scores.json"
    main(["evaluate", "--ckpt_path", str(clf_ckpt), "--input", str(labelled), "--output",
          str(out)])  # fmt: skip
    assert json.loads(out.read_text(encoding="utf-8"))["examples"] == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt_path", str(clf_ckpt), "--input", str(labelled), "--output",
              str(tmp_path)])  # fmt: skip
    captured = capsys.readouterr()
    assert "is a directory" in captured.err and '"accuracy"' not in captured.out


def test_a_closed_pipe_stops_quietly(tagger_ckpt, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Ana vive en Lima\n" * 30_000, encoding="utf-8")
    run = subprocess.run(
        f"{sys.executable} -m seqnlp predict --ckpt_path {tagger_ckpt} --input {src} "
        f"--no_progress | head -1", shell=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert json.loads(run.stdout)["tokens"][0] == "Ana"
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr


def test_a_misspelt_recipe_key_is_one_line(ner_files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", NER_RECIPE, *_ner_data(ner_files, tmp_path), "--model.word_dimm", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "seqnlp: error: model (seqnlp.tasks.Tagger): Option 'word_dimm' is not accepted "
        "(`seqnlp fit --help` lists the options)"
    ]


# -- messages that mislead -------------------------------------------------------------------
def test_an_unseen_tag_is_named_as_written_with_its_line(ner_files, tmp_path, capsys):
    dev = tmp_path / "dev.conll"
    dev.write_text("Ana B-PER\n\nla O\nCopa B-FOO\n\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["fit", NER_RECIPE, "--data.dataset", "null", "--data.train",
              str(ner_files["train"]), "--data.validation", str(dev), "--data.cache_dir",
              str(tmp_path / "hf"), "--trainer.default_root_dir",
              str(tmp_path / "runs")])  # fmt: skip
    line = _error_line(capsys)
    assert f"{dev}:4: tag B-FOO (a one-token FOO entity, S-FOO in the model's BIOES)" in line
    assert not (tmp_path / "runs").exists()  # no empty run folder left behind


def test_an_unseen_test_tag_fails_fit_at_once_and_evaluate_says_where(
    ner_files, tagger_ckpt, tmp_path, capsys
):
    test = tmp_path / "test.conll"
    test.write_text("Ana B-PER\n\nCopa B-FOO\nAmérica I-FOO\n\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt_path", str(tagger_ckpt), "--input", str(test)])
    assert f"{test}:3: tag B-FOO (the first token of a longer FOO entity" in _error_line(capsys)
    with pytest.raises(SystemExit):
        main(["fit", NER_RECIPE, "--data.dataset", "null", "--data.train",
              str(ner_files["train"]), "--data.validation", str(ner_files["validation"]),
              "--data.test", str(test), "--data.cache_dir", str(tmp_path / "hf"),
              "--trainer.default_root_dir", str(tmp_path / "runs")])  # fmt: skip
    assert f"{test}:3: tag B-FOO" in _error_line(capsys)


def test_a_tab_after_the_tag_is_read_as_trailing_space_is(tmp_path):
    from seqnlp.data.tagging_readers import read_tagging_file

    path = tmp_path / "t.conll"
    path.write_text("Ana\tB-PER\t\nvive\tO  \n\n", encoding="utf-8")
    assert read_tagging_file(path) == [{"tokens": ["Ana", "vive"], "tags": ["B-PER", "O"]}]


def test_process_substitution_input_is_read(tagger_ckpt, tmp_path):
    run = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m seqnlp predict --ckpt_path {tagger_ckpt} "
                       f"--input <(echo 'Ana vive') --no_progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-1000:]
    assert json.loads(run.stdout)["tokens"] == ["Ana", "vive"]


def test_an_encoding_can_be_given(tagger_ckpt, tmp_path, capsys):
    src = tmp_path / "latin.txt"
    src.write_bytes("José vive en Bogotá\n".encode("latin-1"))
    with pytest.raises(SystemExit):
        _ = main(["predict", "--ckpt_path", str(tagger_ckpt), "--input", str(src)])
    assert "--encoding for predict and evaluate" in _error_line(capsys)
    main(["predict", "--ckpt_path", str(tagger_ckpt), "--input", str(src), "--encoding",
          "latin-1", "--no_progress"])  # fmt: skip
    assert json.loads(capsys.readouterr().out)["tokens"][0] == "José"
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(tagger_ckpt), "--input", str(src), "--encoding",
              "klingon"])  # fmt: skip
    assert "unknown text encoding 'klingon'" in _error_line(capsys)


def test_an_output_named_for_another_task_is_refused(tagger_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _predict_to(tagger_ckpt, tmp_path / "x.tsv", tmp_path)
    assert "a tagging model writes jsonl, conll, not tsv" in _error_line(capsys)


def test_beam_size_zero_says_beam_size(tagger_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(tagger_ckpt), "--input", "-", "--beam_size", "0"])
    assert "--beam_size: must be at least 1, got 0" in capsys.readouterr().err


def test_checkpoint_saves_log_no_weights_only_line(tmp_path, caplog):
    import logging

    from seqnlp.cli import main as cli

    recipe = Path(NER_RECIPE)
    with caplog.at_level(logging.INFO):
        cli(["fit", str(recipe), "--trainer.max_epochs", "1", "--data.cache_dir",
             str(tmp_path / "hf"), "--trainer.default_root_dir", str(tmp_path / "r"),
             "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert "weights_only` was not set" not in caplog.text
    assert read_checkpoint(next((tmp_path / "r").glob("**/last.ckpt")))


def test_average_never_writes_over_one_of_its_inputs(tagger_ckpt, tmp_path, capsys):
    import shutil

    first = tmp_path / "first.ckpt"
    shutil.copy(tagger_ckpt, first)
    before = first.read_bytes()
    with pytest.raises(SystemExit):
        main(["average", str(first), str(tagger_ckpt), "--output", str(first)])
    assert "would destroy the input" in _error_line(capsys)
    assert first.read_bytes() == before
    main(["average", str(first), str(tagger_ckpt), "--output", str(tmp_path / "avg.ckpt")])
    assert load_system(tmp_path / "avg.ckpt") and not list(tmp_path.glob(".*.part"))
