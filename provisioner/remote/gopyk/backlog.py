# gopyk remote launcher: backlog — iopub read at the kernel's pace, whatever the link does.
#
# ipykernel's PUB socket drops whole messages once its reader falls behind
# by its high-water mark (1000 messages, or what specs.py's PUB_SHIM sets),
# as ZMQ does for a slow subscriber: a relay that stops reading the kernel's
# iopub when the link is slow loses output, the cell's final status
# included, and the notebook stays busy. So
# iopub is read as fast as the kernel writes, and what the link has not
# taken yet waits here: STREAM_CAP bytes in memory (relay.py's sent), the
# rest in unlinked files of the run dir (Spill), up to the spec's
# iopub_backlog. At the bound (or when the disk refuses) reading pauses, as
# for the other channels, and the supervisor log and the local side (its log
# and the running cells, through an N frame) say that output may be lost.
# shell, control and stdin keep relay.py's flow control: their peers wait.
#
# Owns: class PubStream (iopub's relay.Stream: its reading, the bound and
# what is said when it is hit), class Spill (the spill files).
# May not: parse or change the kernel's bytes (they pass in order, unread,
# so resume offsets and signatures hold), see the key, leave a spill file
# behind (they are unlinked at once), write to stdout.

import errno
import os
import time

from .common import drop_front
from .relay import STREAM_CAP, Stream


DEFAULT_BACKLOG = 1 << 30  # iopub bytes held for a slow link before reading the kernel pauses
SPILL_SEGMENT = 64 << 20  # bytes per spill file; a file read to its end is closed (and so freed)
DRAIN_READS = 16  # reads of the kernel's iopub per wakeup: its unix socket holds ~200 KB
RETELL_AFTER = 60.0  # seconds: a link that keeps the backlog at its bound is told of once a minute


def mib(n):
    return "%.1f MiB" % (n / 1048576.0)


class Spill(object):
    """Bytes waiting on disk, first in first out, in files of the run dir
    that are unlinked at once (nobody else can open them, nothing is left
    behind) and closed once read to their end, so the disk holds what waits
    plus at most one SPILL_SEGMENT. What the disk refuses (full, quota)
    waits in memory after the files, and failed says why."""

    def __init__(self, where):
        self.dir = where
        self.segs = []  # [fd, read offset, write offset], oldest first
        self.tail = bytearray()  # after the files: what the disk refused
        self.size = 0
        self.failed = None

    def __len__(self):
        return self.size

    def open(self):
        if hasattr(os, "O_TMPFILE"):
            try:
                return os.open(self.dir, os.O_TMPFILE | os.O_RDWR, 0o600)
            except OSError:
                pass  # a file system without it
        for _ in range(100):
            path = os.path.join(self.dir, "spill-" + os.urandom(6).hex())
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.unlink(path)
            return fd
        raise OSError(errno.EEXIST, "no free spill file name in %s" % self.dir)

    def append(self, data):
        self.size += len(data)
        done = 0
        if self.failed is None and not self.tail:
            try:
                if not self.segs or self.segs[-1][2] >= SPILL_SEGMENT:
                    self.segs.append([self.open(), 0, 0])
                seg = self.segs[-1]
                with memoryview(data) as mv:
                    while done < len(mv):
                        done += os.pwrite(seg[0], mv[done:], seg[2] + done)
            except OSError as e:
                self.failed = e
            if self.segs:
                self.segs[-1][2] += done
            if done == len(data):
                return
        self.tail += memoryview(data)[done:]

    def take(self, n):
        """Up to n bytes from the front (fewer at a file's end)."""
        if self.segs:
            seg = self.segs[0]
            data = os.pread(seg[0], min(n, seg[2] - seg[1]), seg[1])
            if not data:
                raise OSError(errno.EIO, "a spill file is shorter than what was written to it")
            seg[1] += len(data)
            if seg[1] == seg[2]:  # read to its end: nothing more goes in either
                os.close(seg[0])
                self.segs.pop(0)
        else:
            data = bytes(self.tail[:n])
            self.tail = drop_front(self.tail, len(data))
        self.size -= len(data)
        if not self.size:
            self.failed = None  # all out: the disk gets another chance
        return data

    def close(self):
        for seg in self.segs:
            os.close(seg[0])
        self.segs = []
        self.tail = bytearray()
        self.size = 0


class PubStream(Stream):
    """The iopub stream: read whenever the kernel writes, up to the bound."""

    reads = DRAIN_READS

    def __init__(self, sup, sid, channel, ks):
        Stream.__init__(self, sup, sid, channel, ks)
        self.spill = Spill(sup.run_dir)
        self.limit = sup.backlog
        self.paused = False  # at the bound: the kernel is not read
        self.told = None  # when the last pause was told of (monotonic); pauses soon after are not
        self.quiet = 0  # pauses since then
        self.peak = 0  # the most that waited since the spill was last empty

    def held(self):
        return len(self.sent) + len(self.spill)

    def pending(self):
        return len(self.spill)

    def reading(self):
        return not self.paused

    def take(self, data):
        if not self.spill and len(self.sent) < STREAM_CAP:
            self.sent += data
            return
        failed = self.spill.failed
        self.spill.append(data)
        self.peak = max(self.peak, self.held())
        if failed is None and self.spill.failed is not None:
            self.pause("the disk refused the spill file in %s (%s)" % (self.sup.run_dir, self.spill.failed))
        elif self.held() >= self.limit:
            self.pause("%s of output wait for the link, the bound" % mib(self.held()))

    def pause(self, why):
        if self.paused:
            return
        self.paused = True
        now = time.monotonic()
        if self.told is not None and now - self.told < RETELL_AFTER:
            self.quiet += 1
            return
        if self.quiet:
            why += " (it paused %d more times since the last notice)" % self.quiet
        self.told, self.quiet = now, 0
        hint = "gopyk edit --kernel-name %s --iopub-backlog MIB" % self.sup.p["tag"] if self.sup.p.get("tag") else "the spec's iopub_backlog"
        msg = ("the kernel writes output faster than the connection carries it and %s: reading its output "
               "pauses until the link catches up, and the kernel may drop output meanwhile (%s raises the bound)" % (why, hint))
        self.sup.log("stream %s: %s" % (self.id, msg))
        self.note(msg)

    def refill(self):
        room = STREAM_CAP - len(self.sent)
        if not self.spill or room <= 0:
            return False
        try:
            self.sent += self.spill.take(min(room, 1 << 20))
        except OSError as e:
            self.sup.log("stream %s: spill file: %s; the stream ends" % (self.id, e))
            self.close()
            return False
        if not self.spill:
            if self.peak >= 64 << 20 or self.told is not None and not self.quiet:
                self.sup.log("stream %s: %s of output waited for the link; all of it is on its way" % (self.id, mib(self.peak)))
            self.peak = 0
        if self.paused and (not self.spill or self.held() < self.limit // 2 and self.spill.failed is None):
            self.paused = False
            if not self.quiet:
                self.sup.log("stream %s: the link caught up; reading the kernel's output again" % self.id)
            self.update()
        return True

    def release(self):
        self.spill.close()
