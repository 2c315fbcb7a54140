"""Issue #9, point 5: files are written so that nobody with write access to the folder can point
our write at another file, and the `file` destination never writes outside its folder."""

import json
import os
import stat
from pathlib import Path

import pytest

from include.detection import destinations, storage
from include.detection.destinations import FileTickets, PermanentError
from include.detection.files import atomic_path, write_text
from include.detection.store import AlertStore
from tests.detection.test_destinations import executions, more_evidence

VICTIM_TEXT = "precious: must never be overwritten\n"


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the folder written to, that a planted symlink points at."""
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT)
    return path


def predictable_names(name: str) -> list[str]:
    """Temp names a writer could plausibly use, including the one used before (pid-based)."""
    return [f".{name}.tmp-{os.getpid()}", f".{name}.tmp", f"{name}.tmp", f".{name}.swp"]


def write_with_write_text(target: Path, text: str) -> None:
    write_text(target, text)


def write_with_atomic_path(target: Path, text: str) -> None:
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_with_file_destination(target: Path, text: str) -> None:
    FileTickets(folder=target.parent).deliver(
        {"id": target.name.removesuffix(".json"), "text": text}, None
    )


def write_with_storage(target: Path, text: str) -> None:
    storage.write_text(str(target), text)


def write_with_storage_file_url(target: Path, text: str) -> None:
    storage.write_text(target.as_uri(), text)


def write_with_file_destination_url(target: Path, text: str) -> None:
    FileTickets(folder=target.parent.as_uri()).deliver(
        {"id": target.name.removesuffix(".json"), "text": text}, None
    )


WRITERS = {
    "write_text": write_with_write_text,
    "atomic_path": write_with_atomic_path,
    "file-destination": write_with_file_destination,
    "storage path": write_with_storage,
    "storage file://": write_with_storage_file_url,
    "file-destination file://": write_with_file_destination_url,
}


def folder_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("write", list(WRITERS.values()), ids=list(WRITERS))
def test_symlinks_planted_at_predictable_temp_names_are_not_followed(write, tmp_path, victim):
    folder = tmp_path / "tickets"
    folder.mkdir()
    target = folder / "alert-1.json"
    planted = predictable_names(target.name)
    for name in planted:
        (folder / name).symlink_to(victim)
    write(target, "new ticket")
    assert victim.read_text() == VICTIM_TEXT, "the write followed a planted symlink"
    assert target.is_file() and not target.is_symlink()
    assert "new ticket" in target.read_text()
    assert folder_files(folder) == {target.name, *planted}, "no temp file left behind"


@pytest.mark.parametrize("write", list(WRITERS.values()), ids=list(WRITERS))
def test_a_symlink_at_the_target_is_replaced_and_its_target_left_alone(write, tmp_path, victim):
    folder = tmp_path / "tickets"
    folder.mkdir()
    target = folder / "alert-1.json"
    target.symlink_to(victim)
    write(target, "new ticket")
    assert victim.read_text() == VICTIM_TEXT
    assert not target.is_symlink() and "new ticket" in target.read_text()


def test_a_temp_file_swapped_for_a_symlink_while_written_is_not_renamed_into_place(
    tmp_path, victim
):
    target = tmp_path / "result.jsonl"
    target.write_text("old result\n")
    with pytest.raises(OSError, match="replaced while being written"):
        with atomic_path(target) as tmp:
            tmp.unlink()
            tmp.symlink_to(victim)  # what a racing writer of the folder would do
    assert target.read_text() == "old result\n" and victim.read_text() == VICTIM_TEXT
    assert folder_files(tmp_path) == {"result.jsonl", "outside"}


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "result.jsonl"
    target.write_text("old result\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old result\n" and folder_files(tmp_path) == {"result.jsonl"}


@pytest.mark.parametrize(
    "write", [write_with_write_text, write_with_atomic_path], ids=["write_text", "atomic_path"]
)
def test_written_files_get_the_mode_open_would_give_them_or_the_one_asked_for(write, tmp_path):
    old = os.umask(0o027)
    try:
        write(tmp_path / "shared.json", "x")
        write_text(tmp_path / "private.json", "x", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


# --- the file destination's ticket reference ------------------------------------------------------

BAD_REFS = {
    "parent-folder": "../escape.json",
    "absolute-path": "/tmp/escape.json",
    "sub-folder": "sub/escape.json",
    "backslash": "sub\\escape.json",
    "dot-dot": "..",
    "dot-dot-inside": "a..json",
    "dot-name": ".hidden.json",
    "nul": "x\x00.json",
    "newline": "x\n.json",
}


@pytest.mark.parametrize("ref", list(BAD_REFS.values()), ids=list(BAD_REFS))
def test_the_file_destination_refuses_a_ticket_reference_that_is_not_a_plain_name(ref, tmp_path):
    folder = tmp_path / "a" / "tickets"
    folder.mkdir(parents=True)
    (alert,) = executions(1)
    with pytest.raises(PermanentError, match="refusing ticket reference"):
        FileTickets(folder=folder).deliver(alert, ref)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], f"wrote {written}"


def test_an_alert_id_with_a_path_separator_is_refused(tmp_path):
    (alert,) = executions(1)
    with pytest.raises(PermanentError, match="path separator"):
        FileTickets(folder=tmp_path / "tickets").deliver({**alert, "id": "../../x"}, None)
    assert not (tmp_path / "x.json").exists()


def test_a_hostile_ticket_reference_from_the_store_leaves_that_alert_pending(tmp_path):
    """The store said the ticket is `../escape.json` (a tampered row): the update is refused, the
    alert stays pending with the reason, and the other alerts are delivered."""
    folder = tmp_path / "tickets"
    with AlertStore(str(tmp_path / "alerts.db")) as store:
        alerts = executions(2)
        store.upsert(alerts)
        settings = {"file": {"folder": str(folder)}}
        destinations.deliver_pending(store, ["file"], settings=settings)
        tampered = alerts[0]["id"]
        with store._tx() as cur:
            cur.execute(
                "UPDATE alert_deliveries SET ticket_ref = ? WHERE alert_id = ?",
                ("../escape.json", tampered),
            )
        store.upsert(more_evidence(2))
        with pytest.raises(destinations.DeliveryError):
            destinations.deliver_pending(store, ["file"], settings=settings)
        assert store.pending_ids("file") == [tampered]
        stored = store.get(tampered)
        assert "refusing ticket reference" in json.dumps(stored), "the reason was recorded"
        other = store.get(alerts[1]["id"])
        assert [t["revision"] for t in other["tickets"]] == [2], "the other alert was delivered"
    assert not (tmp_path / "escape.json").exists()
