"""spotifai.search: relevance order, typos, several keywords, pagination, bounds, hostile input."""

from __future__ import annotations

import pytest

from spotifai import database
from spotifai.search import MAX_LIMIT, MAX_RESULTS, search

CATALOG = [
    # title, artist, album, popularity
    ("Dancing Shoes", "Arctic Monkeys", "Whatever People Say I Am", 50),
    ("Fluorescent Adolescent", "Arctic Monkeys", "Favourite Worst Nightmare", 80),
    ("Do I Wanna Know?", "Arctic Monkeys", "AM", 95),
    ("Blue Suede Shoes", "Elvis Presley", "Elvis Presley", 70),
    ("Shoes", "Tiga", "Sexor", 10),
    ("Shoestring", "Nobody", "Laces", 5),
    ("Teardrop", "Massive Attack", "Mezzanine", 60),
    ("Jóga", "Björk", "Homogenic", 40),
    ("Angel", "Massive Attack", "Mezzanine", 30),
    ("Dancing Queen", "ABBA", "Arrival", 90),
]


@pytest.fixture()
def conn(tmp_path):
    c = database.connect(tmp_path / "s.db")
    with c:
        for i, (title, artist, album, pop) in enumerate(CATALOG):
            database.upsert_track(c, uri=f"t:{i}", title=title, artist=artist, album=album, popularity=pop)
        for i in range(150):  # filler for pagination: all match "filler"
            database.upsert_track(c, uri=f"f:{i}", title=f"Filler Song {i}", artist=f"Band {i % 7}",
                                  album="Fillers", popularity=i % 10)
    yield c
    c.close()


def titles(results):
    return [r["title"] for r in results]


def test_result_fields(conn):
    (r,) = search(conn, "teardrop", limit=1)
    assert set(r) == {"id", "title", "artist", "album", "duration", "popularity", "score"}
    assert (r["title"], r["artist"], r["album"]) == ("Teardrop", "Massive Attack", "Mezzanine")


def test_exact_then_prefix_then_partial(conn):
    got = titles(search(conn, "shoes"))
    assert got[0] == "Shoes"  # the title is exactly the query
    assert set(got[1:3]) == {"Dancing Shoes", "Blue Suede Shoes"}  # exact word
    assert got.index("Shoestring") > got.index("Blue Suede Shoes")  # prefix after exact word
    # among equally good matches, the more popular first
    assert got.index("Blue Suede Shoes") < got.index("Dancing Shoes")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("dancng shoes", "Dancing Shoes"),
        ("dacning shose", "Dancing Shoes"),  # two typos (a swap counts as one)
        ("shoes arctic", "Dancing Shoes"),  # keywords across title and artist
        ("arctc monkys shoes", "Dancing Shoes"),
        ("flourescent adolecsent", "Fluorescent Adolescent"),
        ("massive atack mezanine angel", "Angel"),
        ("joga bjork", "Jóga"),  # diacritics folded
        ("JÓGA", "Jóga"),
        ("fluor", "Fluorescent Adolescent"),  # prefix while typing
        ("teardrp", "Teardrop"),
    ],
)
def test_typos_and_keywords_find_the_track_first(conn, query, expected):
    assert titles(search(conn, query, limit=5))[0] == expected


def test_partial_match_when_not_all_words_match(conn):
    got = titles(search(conn, "teardrop zzzqqq"))
    assert got[0] == "Teardrop"


def test_pagination_is_stable(conn):
    full = search(conn, "filler", limit=MAX_LIMIT)
    pages = []
    for offset in range(0, 150, 20):
        pages.extend(search(conn, "filler", limit=20, offset=offset))
    assert [r["id"] for r in pages] == [r["id"] for r in search(conn, "filler", limit=100)] + [
        r["id"] for r in search(conn, "filler", limit=50, offset=100)
    ]
    assert len({r["id"] for r in pages}) == 150
    assert [r["id"] for r in pages[:MAX_LIMIT]] == [r["id"] for r in full]
    keys = [(-r["score"], -r["popularity"], r["id"]) for r in pages]
    assert keys == sorted(keys)
    assert search(conn, "filler", limit=20, offset=140)[-1]["id"] == pages[-1]["id"]
    assert search(conn, "filler", limit=20, offset=150) == []


def test_bounds(conn):
    assert search(conn, "") == []
    assert search(conn, "   ") == []
    assert search(conn, "?!*()") == []
    assert search(conn, "shoes", limit=0) == []
    assert len(search(conn, "filler", limit=10_000)) == MAX_LIMIT
    assert search(conn, "filler", offset=MAX_RESULTS) == []
    assert search(conn, "shoes", limit=-5) == []
    assert titles(search(conn, "shoes", offset=-3))[0] == "Shoes"
    long = "dancing shoes " + "x" * 100_000
    assert titles(search(conn, long, limit=3))[0] == "Dancing Shoes"
    assert titles(search(conn, " ".join(["shoes"] * 1000), limit=1)) == ["Shoes"]


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE tracks; --",
        '" OR 1=1 --',
        "shoes\" OR \"x",
        "NEAR(shoes arctic) AND NOT OR",
        "title:shoes",
        "sh*",
        "^shoes",
        "%_\\",
        "\x00shoes",
    ],
)
def test_sql_and_fts_syntax_is_harmless(conn, query):
    results = search(conn, query)
    assert isinstance(results, list)
    assert database.counts(conn)["tracks"] == len(CATALOG) + 150


def test_search_sees_new_tracks_and_works_readonly(conn, tmp_path):
    assert search(conn, "zebra") == []
    with conn:
        database.upsert_track(conn, uri="new", title="Zebra Crossing", artist="Stripes")
    assert titles(search(conn, "zebra")) == ["Zebra Crossing"]
    ro = database.connect(tmp_path / "s.db", readonly=True)
    assert titles(search(ro, "zebra crosing"))[0] == "Zebra Crossing"
    with conn:
        database.upsert_track(conn, uri="new", title="Zebra Walk", artist="Stripes")
    assert titles(search(ro, "zebra")) == ["Zebra Walk"]  # another connection's change is seen
    ro.close()
