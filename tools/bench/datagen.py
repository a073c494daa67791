"""A realistic, deterministic ChatFlow data set, written as COPY text files.

Users belong to a few workspaces, each workspace has public and private
channels whose traffic follows a power law, messages are English-like text
(Faker's 1,500-word list drawn with Zipf frequencies, with mentions, links and
code words) so that full-text and trigram search mean something.  Replies form
threads, members have a last_read_at, reactions and notifications point at
messages.  The same seed gives the same rows, so both sides of the benchmark
and the plan tests load identical data.

Only the columns that the seed's schema and ours share are written (our
channels.type is derived from is_private by a trigger, messages.type defaults
to 'text'); channel_members.last_read_at is the one column the seed lacks
(the benchmark adds it there, see tools/seed_sql.py).

    python3 -m tools.bench.datagen --out DIR [--messages N] [--seed S]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faker.providers.lorem.en_US import Provider as _Lorem

# Table -> columns, in load order (foreign keys first).
COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (
        "id",
        "email",
        "username",
        "password_hash",
        "display_name",
        "status",
        "created_at",
        "updated_at",
        "is_active",
    ),
    "workspaces": ("id", "name", "description", "owner_id", "created_at", "updated_at"),
    "workspace_members": ("id", "workspace_id", "user_id", "role", "joined_at"),
    "channels": ("id", "workspace_id", "name", "description", "creator_id", "is_private", "created_at", "updated_at"),
    "channel_members": ("id", "channel_id", "user_id", "joined_at", "last_read_at"),
    "messages": ("id", "channel_id", "user_id", "content", "thread_id", "created_at", "is_pinned"),
    "reactions": ("id", "message_id", "user_id", "emoji", "created_at"),
    "notifications": ("id", "user_id", "type", "actor_id", "related_message_id", "is_read", "created_at", "read_at"),
}

EMOJI = ("👍", "❤️", "🚀", "😂", "🎉", "👀", "🙏", "🔥", "✅", "😅")
CODE_WORDS = (
    "deploy",
    "postgres",
    "redis",
    "kubernetes",
    "docker",
    "pipeline",
    "migration",
    "frontend",
    "backend",
    "latency",
    "websocket",
    "typescript",
    "hotfix",
    "staging",
    "rollback",
    "dashboard",
    "endpoint",
    "pagination",
)
CHANNEL_TOPICS = (
    "general",
    "random",
    "dev",
    "design",
    "ops",
    "support",
    "sales",
    "marketing",
    "product",
    "qa",
    "infra",
    "data",
    "mobile",
    "web",
    "security",
    "hiring",
    "announcements",
    "standup",
    "incidents",
    "releases",
)
START = datetime(2026, 5, 1, tzinfo=UTC)
SPAN = timedelta(days=180)
NO_LOGIN_HASH = "!benchmark-user-cannot-log-in"


@dataclass
class Scale:
    """How much to generate; the defaults are the benchmark's 1M-message set."""

    users: int = 5000
    workspaces: int = 40
    channels_per_workspace: int = 100
    messages: int = 1_000_000
    reactions: int = 300_000
    notifications: int = 200_000

    @classmethod
    def for_messages(cls, messages: int) -> Scale:
        """A set whose other tables keep the proportions of the default one."""
        f = messages / 1_000_000
        return cls(
            users=max(200, int(5000 * f)),
            workspaces=max(4, int(40 * f)),
            channels_per_workspace=100 if f >= 0.1 else 50,
            messages=messages,
            reactions=int(300_000 * f),
            notifications=int(200_000 * f),
        )


@dataclass
class Summary:
    """What was generated, and values the workload draws its parameters from."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    end: str = ""
    search_words: list[str] = field(default_factory=list)
    fuzzy_fragments: list[str] = field(default_factory=list)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _nul(v: object) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    return str(v)


class _Writer:
    """One COPY text file per table."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.files = {t: (out / f"{t}.tsv").open("w", encoding="utf-8") for t in COLUMNS}
        self.rows = dict.fromkeys(COLUMNS, 0)

    def row(self, table: str, *values: object) -> None:
        self.files[table].write("\t".join(_nul(v) for v in values) + "\n")
        self.rows[table] += 1

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class _Text:
    """English-like chat messages with a Zipf word frequency."""

    def __init__(self, rng: random.Random, usernames: list[str]) -> None:
        words = [w for w in _Lorem.word_list if w.isalpha()]
        rng.shuffle(words)
        self.words = words
        self.cum = list(itertools.accumulate(1.0 / (rank + 1) ** 1.05 for rank in range(len(words))))
        self.rng = rng
        self.usernames = usernames

    def words_of(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cum, k=k)

    def message(self) -> str:
        rng = self.rng
        n = min(60, max(2, int(rng.lognormvariate(2.3, 0.6))))
        words = self.words_of(n)
        r = rng.random()
        if r < 0.12:
            words.insert(rng.randrange(len(words)), "@" + rng.choice(self.usernames))
        elif r < 0.22:
            words.insert(rng.randrange(len(words)), rng.choice(CODE_WORDS))
        elif r < 0.25:
            words.append(f"https://docs.example.test/{rng.choice(CODE_WORDS)}/{rng.randrange(1000)}")
        text = " ".join(words)
        text = text[0].upper() + text[1:]
        return text + rng.choice((".", ".", ".", "?", "!", "", " :)"))

    def mid_frequency(self, count: int) -> list[str]:
        """Words a user would search for: neither the commonest nor unseen."""
        band = [w for w in self.words[40:600] if len(w) >= 5]
        return self.rng.sample(band, min(count, len(band)))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(out: Path, scale: Scale, seed: int = 20261121) -> Summary:
    """Write one COPY file per table into `out`; return the summary (also written as summary.json)."""
    started = time.monotonic()
    gen = _Generator(random.Random(seed), _Writer(out), scale)
    gen.users()
    gen.workspaces()
    gen.channels()
    last = gen.messages()
    gen.reactions()
    gen.notifications()
    gen.w.close()
    summary = Summary(
        rows=gen.w.rows,
        seconds=round(time.monotonic() - started, 1),
        end=_ts(last),
        search_words=gen.text.mid_frequency(200),
        fuzzy_fragments=sorted({word[1:6] for word in gen.text.mid_frequency(200) if len(word) >= 6}),
    )
    (out / "summary.json").write_text(json.dumps(summary.__dict__, indent=1) + "\n", encoding="utf-8")
    return summary


class _Generator:
    """The tables in the order their rows depend on each other; one random stream."""

    def __init__(self, rng: random.Random, writer: _Writer, scale: Scale):
        self.rng, self.w, self.scale = rng, writer, scale
        self.end = START + SPAN
        self.users_: list[str] = []
        self.usernames: list[str] = []
        self.workspaces_: list[str] = []
        self.ws_members: list[list[int]] = [[] for _ in range(scale.workspaces)]
        self.channels_: list[str] = []
        self.ch_members: list[list[int]] = []
        self.msg_ids: list[str] = []
        self.msg_channel: list[int] = []
        self.msg_author: list[int] = []
        self.msg_time: list[datetime] = []

    def users(self) -> None:
        rng = self.rng
        for i in range(self.scale.users):
            uid = _uuid(rng)
            name = f"user{i:05d}"
            created = START - timedelta(days=rng.uniform(30, 400))
            self.users_.append(uid)
            self.usernames.append(name)
            status = rng.choice(("online", "offline", "offline", "away", "dnd"))
            self.w.row(
                "users",
                uid,
                f"{name}@example.test",
                name,
                NO_LOGIN_HASH,
                f"User {i}",
                status,
                _ts(created),
                _ts(created),
                True,
            )
        self.text = _Text(rng, self.usernames)

    def workspaces(self) -> None:
        """Workspaces and their members (each user in 1-3 workspaces)."""
        rng, scale = self.rng, self.scale
        for u in range(scale.users):
            for ws in rng.sample(range(scale.workspaces), rng.choice((1, 1, 2, 2, 3))):
                self.ws_members[ws].append(u)
        for ws in range(scale.workspaces):
            wid = _uuid(rng)
            self.workspaces_.append(wid)
            if not self.ws_members[ws]:
                self.ws_members[ws].append(rng.randrange(scale.users))
            owner = self.ws_members[ws][0]
            created = START - timedelta(days=rng.uniform(1, 30))
            description = " ".join(self.text.words_of(8))
            self.w.row(
                "workspaces", wid, f"Workspace {ws}", description, self.users_[owner], _ts(created), _ts(created)
            )
            for n, u in enumerate(self.ws_members[ws]):
                role = "owner" if n == 0 else ("admin" if n < 3 else "member")
                self.w.row(
                    "workspace_members", _uuid(rng), wid, self.users_[u], role, _ts(created + timedelta(hours=n))
                )

    def channels(self) -> None:
        for ws in range(self.scale.workspaces):
            for c in range(self.scale.channels_per_workspace):
                self.channel(ws, c)

    def channel(self, ws: int, c: int) -> None:
        """One channel and its members."""
        rng, members = self.rng, self.ws_members[ws]
        cid = _uuid(rng)
        self.channels_.append(cid)
        topic = CHANNEL_TOPICS[c % len(CHANNEL_TOPICS)]
        name = topic if c < len(CHANNEL_TOPICS) else f"{topic}-{c}"
        private = c >= 5 and rng.random() < 0.2
        size = len(members) if c == 0 else min(len(members), rng.randint(3, 80))
        chosen = members if c == 0 else rng.sample(members, size)
        self.ch_members.append(list(chosen))
        created = START - timedelta(hours=rng.uniform(0, 24))
        topic_text = " ".join(self.text.words_of(6))
        self.w.row(
            "channels",
            cid,
            self.workspaces_[ws],
            name,
            topic_text,
            self.users_[chosen[0]],
            private,
            _ts(created),
            _ts(created),
        )
        for u in chosen:
            last_read = self.end - timedelta(hours=rng.expovariate(1 / 36))
            self.w.row("channel_members", _uuid(rng), cid, self.users_[u], _ts(created), _ts(last_read))

    def messages(self) -> datetime:
        """Messages in time order, channels weighted by a power law, 15% replies; the last one's time."""
        rng = self.rng
        n_ch = len(self.channels_)
        order = list(range(n_ch))
        rng.shuffle(order)
        ch_cum = list(itertools.accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(n_ch)))
        step = SPAN.total_seconds() / self.scale.messages
        recent_roots: dict[int, list[str]] = {}
        t = START
        for _ in range(self.scale.messages):
            t += timedelta(seconds=rng.expovariate(1 / step))
            ch = order[bisect.bisect_left(ch_cum, rng.random() * ch_cum[-1])]
            author = rng.choice(self.ch_members[ch])
            mid = _uuid(rng)
            thread = self.thread_of(recent_roots.setdefault(ch, []), mid)
            content = self.text.message()
            self.w.row(
                "messages", mid, self.channels_[ch], self.users_[author], content, thread, _ts(t), rng.random() < 0.002
            )
            self.msg_ids.append(mid)
            self.msg_channel.append(ch)
            self.msg_author.append(author)
            self.msg_time.append(t)
        return t

    def thread_of(self, roots: list[str], mid: str) -> str | None:
        """A reply to one of the channel's recent roots (15%), or a new root."""
        thread = self.rng.choice(roots) if roots and self.rng.random() < 0.15 else None
        if thread is None:
            roots.append(mid)
            if len(roots) > 20:
                roots.pop(0)
        return thread

    def reactions(self) -> None:
        """Recent messages get more, one per (message, user, emoji)."""
        rng = self.rng
        seen: set[tuple[int, int, int]] = set()
        n_msg = len(self.msg_ids)
        while len(seen) < self.scale.reactions and n_msg:
            m = n_msg - 1 - min(n_msg - 1, int(rng.expovariate(4 / n_msg)))
            u = rng.choice(self.ch_members[self.msg_channel[m]])
            e = rng.randrange(len(EMOJI)) if rng.random() < 0.7 else rng.randrange(3)
            if (m, u, e) in seen:
                continue
            seen.add((m, u, e))
            when = _ts(self.msg_time[m] + timedelta(minutes=5))
            self.w.row("reactions", _uuid(rng), self.msg_ids[m], self.users_[u], EMOJI[e], when)

    def notifications(self) -> None:
        """Mentions and replies, most of the older ones read."""
        rng = self.rng
        n_msg = len(self.msg_ids)
        for _ in range(self.scale.notifications if n_msg else 0):
            m = rng.randrange(n_msg)
            u = rng.choice(self.ch_members[self.msg_channel[m]])
            created = self.msg_time[m]
            read = created < self.end - timedelta(days=3) and rng.random() < 0.9
            self.w.row(
                "notifications",
                _uuid(rng),
                self.users_[u],
                rng.choice(("mention", "reply", "reaction", "direct_message")),
                self.users_[self.msg_author[m]],
                self.msg_ids[m],
                read,
                _ts(created),
                _ts(created + timedelta(minutes=30)) if read else None,
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=20261121)
    args = p.parse_args(argv)
    s = generate(args.out, Scale.for_messages(args.messages), args.seed)
    print(f"[datagen] {sum(s.rows.values())} rows in {s.seconds} s: {s.rows}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
