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
    rng = random.Random(seed)
    w = _Writer(out)
    end = START + SPAN

    # Users.
    users: list[str] = []
    usernames: list[str] = []
    for i in range(scale.users):
        uid = _uuid(rng)
        name = f"user{i:05d}"
        created = START - timedelta(days=rng.uniform(30, 400))
        users.append(uid)
        usernames.append(name)
        w.row(
            "users",
            uid,
            f"{name}@example.test",
            name,
            NO_LOGIN_HASH,
            f"User {i}",
            rng.choice(("online", "offline", "offline", "away", "dnd")),
            _ts(created),
            _ts(created),
            True,
        )
    text = _Text(rng, usernames)

    # Workspaces and their members (each user in 1-3 workspaces).
    workspaces: list[str] = []
    ws_members: list[list[int]] = [[] for _ in range(scale.workspaces)]
    for u in range(scale.users):
        for ws in rng.sample(range(scale.workspaces), rng.choice((1, 1, 2, 2, 3))):
            ws_members[ws].append(u)
    for ws in range(scale.workspaces):
        wid = _uuid(rng)
        workspaces.append(wid)
        if not ws_members[ws]:
            ws_members[ws].append(rng.randrange(scale.users))
        owner = ws_members[ws][0]
        created = START - timedelta(days=rng.uniform(1, 30))
        w.row(
            "workspaces", wid, f"Workspace {ws}", " ".join(text.words_of(8)), users[owner], _ts(created), _ts(created)
        )
        for n, u in enumerate(ws_members[ws]):
            role = "owner" if n == 0 else ("admin" if n < 3 else "member")
            w.row("workspace_members", _uuid(rng), wid, users[u], role, _ts(created + timedelta(hours=n)))

    # Channels and their members.
    channels: list[str] = []
    ch_members: list[list[int]] = []
    for ws in range(scale.workspaces):
        members = ws_members[ws]
        for c in range(scale.channels_per_workspace):
            cid = _uuid(rng)
            channels.append(cid)
            topic = CHANNEL_TOPICS[c % len(CHANNEL_TOPICS)]
            name = topic if c < len(CHANNEL_TOPICS) else f"{topic}-{c}"
            private = c >= 5 and rng.random() < 0.2
            size = len(members) if c == 0 else min(len(members), rng.randint(3, 80))
            chosen = members if c == 0 else rng.sample(members, size)
            ch_members.append(list(chosen))
            created = START - timedelta(hours=rng.uniform(0, 24))
            w.row(
                "channels",
                cid,
                workspaces[ws],
                name,
                " ".join(text.words_of(6)),
                users[chosen[0]],
                private,
                _ts(created),
                _ts(created),
            )
            for u in chosen:
                last_read = end - timedelta(hours=rng.expovariate(1 / 36))
                w.row("channel_members", _uuid(rng), cid, users[u], _ts(created), _ts(last_read))

    # Messages: in time order, channels weighted by a power law, 15% replies.
    n_ch = len(channels)
    order = list(range(n_ch))
    rng.shuffle(order)
    ch_cum = list(itertools.accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(n_ch)))
    step = SPAN.total_seconds() / scale.messages
    recent_roots: dict[int, list[str]] = {}
    msg_ids: list[str] = []
    msg_channel: list[int] = []
    msg_author: list[int] = []
    msg_time: list[datetime] = []
    t = START
    for _ in range(scale.messages):
        t += timedelta(seconds=rng.expovariate(1 / step))
        ch = order[bisect.bisect_left(ch_cum, rng.random() * ch_cum[-1])]
        author = rng.choice(ch_members[ch])
        mid = _uuid(rng)
        roots = recent_roots.setdefault(ch, [])
        thread = rng.choice(roots) if roots and rng.random() < 0.15 else None
        if thread is None:
            roots.append(mid)
            if len(roots) > 20:
                roots.pop(0)
        w.row("messages", mid, channels[ch], users[author], text.message(), thread, _ts(t), rng.random() < 0.002)
        msg_ids.append(mid)
        msg_channel.append(ch)
        msg_author.append(author)
        msg_time.append(t)

    # Reactions: recent messages get more, one per (message, user, emoji).
    seen: set[tuple[int, int, int]] = set()
    n_msg = len(msg_ids)
    while len(seen) < scale.reactions and n_msg:
        m = n_msg - 1 - min(n_msg - 1, int(rng.expovariate(4 / n_msg)))
        u = rng.choice(ch_members[msg_channel[m]])
        e = rng.randrange(len(EMOJI)) if rng.random() < 0.7 else rng.randrange(3)
        if (m, u, e) in seen:
            continue
        seen.add((m, u, e))
        w.row("reactions", _uuid(rng), msg_ids[m], users[u], EMOJI[e], _ts(msg_time[m] + timedelta(minutes=5)))

    # Notifications: mentions and replies, most of the older ones read.
    for _ in range(scale.notifications if n_msg else 0):
        m = rng.randrange(n_msg)
        u = rng.choice(ch_members[msg_channel[m]])
        created = msg_time[m]
        read = created < end - timedelta(days=3) and rng.random() < 0.9
        w.row(
            "notifications",
            _uuid(rng),
            users[u],
            rng.choice(("mention", "reply", "reaction", "direct_message")),
            users[msg_author[m]],
            msg_ids[m],
            read,
            _ts(created),
            _ts(created + timedelta(minutes=30)) if read else None,
        )
    w.close()

    summary = Summary(
        rows=w.rows,
        seconds=round(time.monotonic() - started, 1),
        end=_ts(t),
        search_words=text.mid_frequency(200),
        fuzzy_fragments=sorted({word[1:6] for word in text.mid_frequency(200) if len(word) >= 6}),
    )
    (out / "summary.json").write_text(json.dumps(summary.__dict__, indent=1) + "\n", encoding="utf-8")
    return summary


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
