"""The reader driver against the pty simulator: every card type, every error, debouncing, reconnects, CLI.

No test asserts on timing; waits are bounded polls on the simulator's command counters.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.idcard import codec
from drivers.idcard.card import CardType, IdCard
from drivers.idcard.cli import idcard_main
from drivers.idcard.codec import (
    STATUS_ERRORS,
    CardError,
    CardNotFound,
    ChecksumError,
    Command,
    LinkStatusError,
    ReadFailed,
    SamError,
    SamSelfTestFailed,
    Status,
)
from drivers.idcard.reader import IdCardReader, ReaderDisconnected, ReaderTimeout, list_ports, stable_port
from drivers.idcard.validate import validate_card
from tests.hw_sim.idcard_reader import SimulatedIdCardReader, sample_cards

CARDS = sample_cards()
WAIT = 10.0  # upper bound for any wait; tests finish as soon as the condition holds


@pytest.fixture
def sim() -> Iterator[SimulatedIdCardReader]:
    with SimulatedIdCardReader(read_time=0.0) as s:
        yield s


@pytest.fixture
def reader(sim: SimulatedIdCardReader) -> Iterator[IdCardReader]:
    r = IdCardReader(sim.port, timeout=2.0, read_timeout=2.0)
    yield r
    r.close()


class Watcher:
    """Runs IdCardReader.watch in a thread, collecting cards and errors."""

    def __init__(self, reader: IdCardReader, **kw: object) -> None:
        self.reader = reader
        self.cards: queue.Queue[IdCard] = queue.Queue()
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        opts = {"poll_interval": 0.005, "backoff": (0.005, 0.05), **kw}
        self.thread = threading.Thread(target=reader.watch, args=(self.cards.put, self.stop),
                                       kwargs={"on_error": self.errors.append, **opts}, daemon=True)

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()

    def next_card(self) -> IdCard:
        return self.cards.get(timeout=WAIT)


def polls_after(sim: SimulatedIdCardReader, n: int) -> None:
    """Wait until ``n`` more find-card polls have been answered."""
    target = sim.count(Command.FIND_CARD) + n
    assert sim.wait_for(lambda s: s.commands[Command.FIND_CARD] >= target, WAIT)


# --- single commands ------------------------------------------------------------------------------------


def test_sam_commands(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    assert reader.sam_id() == "05.01-20101027-0011111111-2313123131"
    reader.sam_status()
    reader.reset_sam()
    reader.set_max_rf_byte()
    assert sim.count(Command.SET_MAX_RF_BYTE) == 1


@pytest.mark.parametrize("name", list(CARDS))
def test_read_every_card_type(sim: SimulatedIdCardReader, reader: IdCardReader, name: str) -> None:
    sim.place(CARDS[name])
    card = reader.read_card()
    expected = CARDS[name]
    assert card == IdCard(**{**expected.__dict__, "fingerprint": b""})
    assert len(card.photo) == 1024 and card.photo == expected.photo
    assert validate_card(card).valid == (name != "bad_check_digit")


def test_read_with_fingerprint(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.place(CARDS["foreigner_2023"])
    card = reader.read_card(fingerprint=True)
    assert card == CARDS["foreigner_2023"] and len(card.fingerprint) == 1024
    assert sim.count(Command.READ_TEXT_PHOTO_FINGERPRINT) == 1
    sim.place(CARDS["resident"])
    assert reader.read_card(fingerprint=True).fingerprint == b""


def test_no_card(reader: IdCardReader) -> None:
    assert reader.find_card() is False
    with pytest.raises(CardNotFound):
        reader.read_card()


def test_read_without_select_fails(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.place(CARDS["resident"])
    assert reader.find_card()
    with pytest.raises(ReadFailed):
        reader.read_data()


STATUS_CASES = [(cmd, sw3) for cmd in (Command.READ_SAM_ID, Command.FIND_CARD, Command.SELECT_CARD,
                                       Command.READ_TEXT_PHOTO) for sw3 in sorted(STATUS_ERRORS)]


@pytest.mark.parametrize("command,sw3", STATUS_CASES, ids=[f"{c.name}-{s:02X}" for c, s in STATUS_CASES])
def test_every_status_raises_its_exception(sim: SimulatedIdCardReader, reader: IdCardReader, command: Command,
                                           sw3: int) -> None:
    sim.place(CARDS["resident"])
    sim.fail_next(command, sw3, n=reader.retries + 1)
    action = reader.sam_id if command is Command.READ_SAM_ID else reader.read_card
    if command is Command.FIND_CARD and sw3 == Status.FIND_FAILED:
        with pytest.raises(CardNotFound):     # find_card turns 80 into False, read_card into CardNotFound
            action()
        return
    with pytest.raises(STATUS_ERRORS[sw3]) as info:
        action()
    assert info.value.status == sw3 and info.value.command is command
    resent = reader.retries + 1 if issubclass(STATUS_ERRORS[sw3], LinkStatusError) and sw3 != 0x21 else 1
    assert sim.count(command) == resent


@pytest.mark.parametrize("sw3", [0x10, 0x11])
def test_resend_statuses_are_retried(sim: SimulatedIdCardReader, reader: IdCardReader, sw3: int) -> None:
    sim.place(CARDS["hmt"])
    sim.fail_next(Command.READ_TEXT_PHOTO, sw3)
    assert reader.read_card() == CARDS["hmt"]
    assert reader.stats.retries == 1


def test_unknown_status_is_a_sam_error(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.fail_next(Command.SAM_STATUS, 0x55)
    with pytest.raises(codec.UnexpectedStatus):
        reader.sam_status()


def test_corrupted_answers_are_retried(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.place(CARDS["foreigner_2017"])
    sim.corrupt_next(2)
    assert reader.read_card() == CARDS["foreigner_2017"]
    assert reader.stats.frame_errors == 2 and reader.stats.retries == 2


def test_corrupted_answers_give_up(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.corrupt_next(reader.retries + 1)
    with pytest.raises(ChecksumError):
        reader.sam_id()


def test_bad_length_answer_is_retried(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.bad_length_next()
    assert reader.sam_id()
    assert reader.stats.frame_errors >= 1


def test_garbage_before_frames(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.place(CARDS["resident"])
    sim.garbage_before_next(n=4)
    assert reader.read_card() == CARDS["resident"]
    assert reader.stats.garbage_bytes > 0 and reader.stats.retries == 0


def test_garbage_with_fake_preamble(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.garbage_before_next(b"\x00" + codec.PREAMBLE + b"\x00\x05")
    assert reader.sam_id()


def test_no_answer_times_out(sim: SimulatedIdCardReader, sim_reader_fast: IdCardReader) -> None:
    sim.mute_next()
    with pytest.raises(ReaderTimeout):
        sim_reader_fast.sam_id()
    sim_reader_fast.timeout = WAIT
    assert sim_reader_fast.sam_id()          # the next command works


def test_half_an_answer_times_out(sim: SimulatedIdCardReader, sim_reader_fast: IdCardReader) -> None:
    sim.partial_next()
    with pytest.raises(ReaderTimeout):
        sim_reader_fast.sam_id()
    sim_reader_fast.timeout = WAIT
    assert sim_reader_fast.sam_id()


@pytest.fixture
def sim_reader_fast(sim: SimulatedIdCardReader) -> Iterator[IdCardReader]:
    r = IdCardReader(sim.port, timeout=0.1, read_timeout=0.1)
    yield r
    r.close()


def test_card_removed_mid_read(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.place(CARDS["resident"])
    sim.remove_during_read()
    with pytest.raises(ReadFailed):
        reader.read_card()
    with pytest.raises(CardNotFound):
        reader.read_card()


def test_removed_during_simulated_read_time() -> None:
    with SimulatedIdCardReader(read_time=5.0) as slow:
        r = IdCardReader(slow.port, read_timeout=WAIT)
        slow.place(CARDS["resident"])
        threading.Thread(target=lambda: (slow.wait_for(lambda s: s.commands[Command.SELECT_CARD] >= 1),
                                         slow.remove()), daemon=True).start()
        with pytest.raises(ReadFailed):
            r.read_card()
        r.close()


def test_unplug_and_replug(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    assert reader.sam_id()
    sim.unplug()
    with pytest.raises(ReaderDisconnected):
        reader.sam_id()
    assert not reader.is_open
    with pytest.raises(ReaderDisconnected):
        reader.open()                          # the stable path is gone while unplugged
    sim.replug()
    sim.place(CARDS["foreigner_2023"])
    assert reader.read_card().card_type is CardType.FOREIGNER_2023


def test_wrong_port() -> None:
    with pytest.raises(ReaderDisconnected):
        IdCardReader("/nonexistent/ttyUSB9").open()


def test_wait_for_card(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    threading.Thread(target=lambda: (sim.wait_for(lambda s: s.commands[Command.FIND_CARD] >= 3),
                                     sim.place(CARDS["hmt"])), daemon=True).start()
    assert reader.wait_for_card(WAIT, poll_interval=0.005) == CARDS["hmt"]
    sim.remove()
    with pytest.raises(ReaderTimeout):
        reader.wait_for_card(0.05, poll_interval=0.01)


def test_stable_port(tmp_path: Path) -> None:
    dev = tmp_path / "ttyUSB3"
    dev.touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Reader_123-if00-port0").symlink_to(dev)
    assert stable_port(str(dev), by_id) == str(by_id / "usb-Reader_123-if00-port0")
    assert stable_port(str(tmp_path / "ttyUSB4"), by_id) == str(tmp_path / "ttyUSB4")
    assert stable_port(str(dev), tmp_path / "missing") == str(dev)
    assert list_ports(by_id) == [str(by_id / "usb-Reader_123-if00-port0")]
    assert list_ports(tmp_path / "missing") == []


# --- watch loop -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("after_read", ["present", "halted"])
def test_watch_reads_once_per_presentation(after_read: str) -> None:
    with SimulatedIdCardReader(after_read=after_read) as sim, \
            Watcher(IdCardReader(sim.port, timeout=2.0)) as w:
        sim.place(CARDS["resident"])
        assert w.next_card() == CARDS["resident"]
        polls_after(sim, 10)                     # card left on the reader: no second read
        assert sim.reads == 1 and w.cards.empty()
        sim.remove()
        polls_after(sim, 3)
        sim.place(CARDS["resident"])             # the same card placed again is a new presentation
        assert w.next_card() == CARDS["resident"]
        sim.remove()
        polls_after(sim, 3)
        sim.place(CARDS["foreigner_2017"])
        assert w.next_card() == CARDS["foreigner_2017"]
        assert sim.reads == 3 and w.errors == []


def test_watch_every_card_type_with_fingerprints(sim: SimulatedIdCardReader) -> None:
    with Watcher(IdCardReader(sim.port, timeout=2.0, fingerprint=True)) as w:
        for name, card in CARDS.items():
            sim.place(card)
            assert w.next_card() == card, name
            sim.remove()
            polls_after(sim, 3)


def test_watch_survives_line_errors(sim: SimulatedIdCardReader) -> None:
    reader = IdCardReader(sim.port, timeout=2.0, retries=1)
    with Watcher(reader) as w:
        polls_after(sim, 1)
        sim.garbage_before_next(n=3)
        sim.corrupt_next(4)                      # more than one command's retries: an attempt fails
        sim.bad_length_next(1)
        assert sim.wait_for(lambda s: s.pending_faults == 0, WAIT)
        sim.place(CARDS["hmt"])
        assert w.next_card() == CARDS["hmt"]
        assert [type(e) for e in w.errors] == [ChecksumError, ChecksumError]
        assert reader.stats.frame_errors == 5 and w.cards.empty()


def test_watch_survives_card_errors(sim: SimulatedIdCardReader) -> None:
    with Watcher(IdCardReader(sim.port, timeout=2.0)) as w:
        polls_after(sim, 1)
        sim.fail_next(Command.SELECT_CARD, Status.SELECT_FAILED)
        sim.fail_next(Command.READ_TEXT_PHOTO, Status.CARD_AUTH_FAILED)
        sim.fail_next(Command.READ_TEXT_PHOTO, Status.INFO_VERIFY_FAILED)
        sim.place(CARDS["resident"])
        assert w.next_card() == CARDS["resident"]
        assert [type(e) for e in w.errors] == [codec.SelectFailed, codec.CardAuthFailed, codec.InfoVerifyFailed]
        assert all(isinstance(e, CardError) for e in w.errors)


def test_watch_card_removed_mid_read_then_placed_again(sim: SimulatedIdCardReader) -> None:
    with Watcher(IdCardReader(sim.port, timeout=2.0)) as w:
        polls_after(sim, 1)
        sim.remove_during_read()
        sim.place(CARDS["foreigner_2023"])
        assert sim.wait_for(lambda s: s.answers["41"] >= 1, WAIT)
        polls_after(sim, 2)
        assert w.cards.empty()
        sim.place(CARDS["foreigner_2023"])
        card = w.next_card()
        assert card.card_type is CardType.FOREIGNER_2023
        assert isinstance(w.errors[0], ReadFailed)


def test_watch_timeouts_reopen_the_port(sim: SimulatedIdCardReader) -> None:
    reader = IdCardReader(sim.port, timeout=0.05)
    with Watcher(reader, max_timeouts=2) as w:
        polls_after(sim, 1)
        sim.mute_next(3)
        sim.place(CARDS["resident"])
        assert w.next_card() == CARDS["resident"]
        assert reader.stats.timeouts >= 2 and reader.stats.reconnects >= 1
        assert sum(isinstance(e, ReaderTimeout) for e in w.errors) >= 2


def test_watch_sam_failure_backs_off_and_recovers(sim: SimulatedIdCardReader) -> None:
    sim.fail_next(Command.SAM_STATUS, Status.SAM_SELF_TEST_FAILED, n=2)
    reader = IdCardReader(sim.port, timeout=2.0)
    with Watcher(reader) as w:
        sim.place(CARDS["resident"])
        assert w.next_card() == CARDS["resident"]
        assert [type(e) for e in w.errors] == [SamSelfTestFailed, SamSelfTestFailed]
        assert reader.stats.sam_errors == 2 and sim.count(Command.SAM_STATUS) == 3


def test_watch_sam_error_during_polling(sim: SimulatedIdCardReader) -> None:
    reader = IdCardReader(sim.port, timeout=2.0)
    with Watcher(reader) as w:
        polls_after(sim, 1)
        sim.fail_next(Command.FIND_CARD, Status.SAM_NOT_AUTHORISED)
        polls_after(sim, 2)
        sim.place(CARDS["resident"])
        assert w.next_card() == CARDS["resident"]
        assert isinstance(w.errors[0], SamError) and reader.stats.sam_errors == 1


def test_watch_survives_unplug_and_replug(sim: SimulatedIdCardReader) -> None:
    reader = IdCardReader(sim.port, timeout=2.0)
    with Watcher(reader) as w:
        sim.place(CARDS["resident"])
        assert w.next_card() == CARDS["resident"]
        sim.unplug()
        sim.remove()
        assert _wait(lambda: sum(isinstance(e, ReaderDisconnected) for e in w.errors) >= 2)
        sim.replug()
        sim.place(CARDS["foreigner_2017"])
        assert w.next_card() == CARDS["foreigner_2017"]
        assert reader.stats.reconnects == 1


def test_watch_callback_errors_do_not_stop_it(sim: SimulatedIdCardReader) -> None:
    seen: list[IdCard] = []

    def explode(card: IdCard) -> None:
        seen.append(card)
        raise RuntimeError("consumer bug")

    stop = threading.Event()
    reader = IdCardReader(sim.port, timeout=2.0)
    t = threading.Thread(target=reader.watch, args=(explode, stop), kwargs={"poll_interval": 0.005,
                         "on_error": lambda e: 1 / 0}, daemon=True)
    t.start()
    sim.fail_next(Command.READ_TEXT_PHOTO, Status.READ_FAILED)
    sim.place(CARDS["resident"])
    assert _wait(lambda: len(seen) == 1)
    sim.remove()
    polls_after(sim, 3)
    sim.place(CARDS["hmt"])
    assert _wait(lambda: len(seen) == 2)
    stop.set()
    t.join(WAIT)
    assert not t.is_alive() and not reader.is_open


def test_watch_stops_promptly_while_unplugged(sim: SimulatedIdCardReader) -> None:
    sim.unplug()
    reader = IdCardReader(sim.port)
    with Watcher(reader, backoff=(0.01, 60.0)) as w:
        assert _wait(lambda: len(w.errors) >= 3)
    assert all(isinstance(e, ReaderDisconnected) for e in w.errors)


def test_logs_carry_no_personal_data(sim: SimulatedIdCardReader, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reader = IdCardReader(sim.port, timeout=2.0)
    with Watcher(reader) as w:
        for name in ("resident", "foreigner_2023"):
            sim.corrupt_next()
            sim.place(CARDS[name])
            w.next_card()
            sim.remove()
            polls_after(sim, 3)
    assert "ID card read" in caplog.text
    for card in CARDS.values():
        for secret in (card.name, card.english_name, card.id_number, card.address, card.pass_number):
            if secret:
                assert secret not in caplog.text


def _wait(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.005)
    return True


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_read(sim: SimulatedIdCardReader, capsys: pytest.CaptureFixture[str]) -> None:
    sim.place(CARDS["resident"])
    assert idcard_main(["read", "--port", sim.port, "--timeout", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["card_type"] == "resident" and out["id_number"] == "11010519491231002X"
    assert out["name"] == "王芳" and out["nation"] == "汉" and out["valid_to"] == "长期"
    assert out["photo"]["length"] == 1024 and len(out["photo"]["sha256"]) == 64
    assert set(out["photo"]) == {"format", "length", "sha256"}
    assert out["validation"]["valid"] is True and out["validation"]["code"] == "ok"
    assert out["sam_id"].startswith("05.01-")


def test_cli_invalid_number(sim: SimulatedIdCardReader, capsys: pytest.CaptureFixture[str]) -> None:
    sim.place(CARDS["bad_check_digit"])
    assert idcard_main(["read", "--port", sim.port]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["validation"] == {"valid": False, "code": "bad_check_digit", "scheme": "resident18",
                                 "warnings": [], "reason": out["validation"]["reason"]}


def test_cli_fingerprint(sim: SimulatedIdCardReader, capsys: pytest.CaptureFixture[str]) -> None:
    sim.place(CARDS["foreigner_2023"])
    assert idcard_main(["read", "--port", sim.port, "--fingerprint"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fingerprint"]["length"] == 1024 and out["english_name"].startswith("YANGBEN")


def test_cli_no_card(sim: SimulatedIdCardReader, capsys: pytest.CaptureFixture[str]) -> None:
    assert idcard_main(["read", "--port", sim.port, "--timeout", "0.05"]) == 3
    assert "no card" in capsys.readouterr().err


def test_cli_reader_errors(sim: SimulatedIdCardReader, capsys: pytest.CaptureFixture[str]) -> None:
    assert idcard_main(["read", "--port", "/nonexistent/ttyUSB9"]) == 4
    sim.fail_next(Command.READ_SAM_ID, Status.SAM_NOT_AUTHORISED)
    assert idcard_main(["read", "--port", sim.port]) == 4
    assert "SAM not authorised" in capsys.readouterr().err


def test_cli_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert idcard_main([]) == 2
    assert idcard_main(["read", "--port", "x", "--timeout", "0"]) == 2
    assert idcard_main(["--help"]) == 0


def test_ehc_edge_idcard_read_prints_the_card(sim: SimulatedIdCardReader) -> None:
    import subprocess
    import sys

    sim.place(CARDS["resident"])
    done = subprocess.run([sys.executable, "-m", "edge.cli", "idcard", "read", "--port", sim.port, "--timeout", "5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["id_number"] == "11010519491231002X" and out["validation"]["valid"] is True
    assert set(out["photo"]) == {"format", "length", "sha256"}
