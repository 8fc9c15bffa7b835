"""Text search over the music DB for the demo app: relevance-ordered, typo-tolerant, multi-keyword, paginated.

Design and why
--------------
The index is SQLite FTS5 (``track_search`` in ``schema.sql``): word tokens of title, artist and album
(``unicode61``, case and diacritics folded), stored in the music DB itself, updated by triggers in the same
transaction as the tracks (so ingestion stays atomic), no server, no second copy of the data to keep in sync.
FTS5 answers "which tracks contain these words" from its inverted index in well under a millisecond, also
for AND / OR / prefix combinations. What it does not do is forgive typos. A trigram index would (substring
overlap), but OR-ing a word's trigrams matches a large share of 500,000 tracks for common trigrams, and every one
of those rows must then be ranked (FTS5's BM25 costs about 2 us per matched row here: 100 ms for 50,000 rows). So typos are corrected on the
*vocabulary* instead, which is small (tens of thousands of distinct words for hundreds of thousands of tracks): the words FTS5 indexed (``track_search_vocab``, an fts5vocab table, always in sync) are cached in
memory per database and compared with each query word by ``rapidfuzz`` (maintained, C++, bit-parallel
optimal-string-alignment distance, so a swap of two letters is one typo) — a few milliseconds for the whole
vocabulary. Each query word then becomes a small OR-group of real words: itself, its prefix (``word*``) and its
close spellings (1 edit for 3-4 letters, 2 edits from 5 letters on; the prefix only for the last word, the one
being typed, and for words not in the vocabulary). Candidates come in tiers of growing tolerance: all words
exactly (AND), then the AND of the groups; only if that finds nothing, close spellings of words that are in the
vocabulary (a slip into another real word), then the OR of the groups (partial matches, some keywords missing).
Each tier adds its most popular ``CANDIDATES`` matches. FTS5's own BM25 ranking is not used, for the cost above;
instead the match count (a cheap doclist walk, no row reads) picks the plan: up to ``BY_MATCH_MAX`` matches are
read through the FTS index, more by walking the popularity index and stopping after ``CANDIDATES`` hits. The
price: when a tier matches more than ``CANDIDATES`` tracks (a common word alone), only its most popular ones are
ranked, so a rare track is found by adding a word, not by scrolling.

Ranking (re-done in Python on the candidates)
---------------------------------------------
For each query word: the best match in the title (weight 1.0), artist (0.9) or album (0.75), scored 1.0 for an
exact word, 0.85 for a prefix ("shoe" -> "shoes"), 0.7 / 0.5 for a word 1 / 2 edits away, 0 when absent. The
track's score is the mean over the query words, plus up to 0.3 when the query is the title word for word (0.3
when exact, less for each typo) or 0.1 when the title starts with the query. Ties are broken by popularity
(descending), then track id: a total order, so the same query gives the same list and ``offset`` pages never
overlap or skip. At most ``MAX_RESULTS`` results exist per query (a search box, not an export).

The vocabulary cache is keyed by the database file and invalidated when the FTS index changes (its structure
and averages records are compared on each query: one indexed read). Building it reads the whole vocabulary
once (about a second for 500,000 tracks); readonly connections work.
"""

from __future__ import annotations

import bisect
import re
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import OSA

MAX_QUERY_CHARS = 200  # longer queries are truncated
MAX_QUERY_WORDS = 8  # further words are ignored
MAX_LIMIT = 100  # results per page
MAX_RESULTS = 200  # results per query, over all pages
CANDIDATES = MAX_RESULTS  # tracks fetched per query before re-ranking
BY_MATCH_MAX = 5000  # above this many matches, candidates are found by walking the popularity index
MAX_FUZZY_TERMS = 32  # close spellings kept per query word
FIELD_WEIGHTS = (1.0, 0.9, 0.75)  # title, artist, album
EXACT, PREFIX, FUZZY1, FUZZY2 = 1.0, 0.85, 0.7, 0.5
TITLE_EXACT_BONUS, TITLE_PREFIX_BONUS = 0.3, 0.1

_WORD = re.compile(r"[^\W_]+")


def words(text: str | None) -> list[str]:
    """Split ``text`` into lower-case words without diacritics, the way the FTS5 ``unicode61`` tokenizer with
    ``remove_diacritics 2`` does (letters and digits; everything else separates)."""
    if not text:
        return []
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return _WORD.findall(text.lower())


def max_edits(word: str) -> int:
    """Typos tolerated in a query word of this length: 0 up to 2 letters, 1 for 3-4, 2 from 5 on."""
    n = len(word)
    return 0 if n < 3 else 1 if n < 5 else 2


# ------------------------------------------------------------------------------------------- vocabulary


@dataclass
class _Vocabulary:
    terms: list[str]  # sorted
    docs: dict[str, int]  # term -> number of tracks containing it
    by_length: dict[int, list[str]]

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> _Vocabulary:
        rows = conn.execute("SELECT term, doc FROM track_search_vocab").fetchall()
        terms = [r[0] for r in rows]
        by_length: dict[int, list[str]] = {}
        for term in terms:
            by_length.setdefault(len(term), []).append(term)
        return cls(terms=terms, docs={r[0]: r[1] for r in rows}, by_length=by_length)

    def close_spellings(self, word: str, edits: int) -> dict[str, int]:
        """Vocabulary words at most ``edits`` typos (OSA distance) from ``word``, without ``word`` itself:
        {term: distance}, the nearest and most frequent ``MAX_FUZZY_TERMS``."""
        found: list[tuple[int, int, str]] = []
        for length in range(max(1, len(word) - edits), len(word) + edits + 1):
            bucket = self.by_length.get(length)
            if not bucket:
                continue
            for term, dist, _ in process.extract(
                word, bucket, scorer=OSA.distance, score_cutoff=edits, limit=None
            ):
                if term != word:
                    found.append((int(dist), -self.docs[term], term))
        found.sort()
        return {term: dist for dist, _, term in found[:MAX_FUZZY_TERMS]}

    def has_prefix(self, word: str) -> bool:
        i = bisect.bisect_left(self.terms, word)
        return i < len(self.terms) and self.terms[i].startswith(word) and (
            self.terms[i] != word or (i + 1 < len(self.terms) and self.terms[i + 1].startswith(word))
        )


_cache: dict[object, tuple[tuple, _Vocabulary]] = {}
_cache_lock = threading.Lock()


def _vocabulary(conn: sqlite3.Connection) -> _Vocabulary:
    files = [r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"]
    key: object = files[0] if files and files[0] else ("connection", id(conn))
    signature = tuple(conn.execute("SELECT id, block FROM track_search_data WHERE id IN (1, 10) ORDER BY id"))
    signature = tuple((r[0], bytes(r[1])) for r in signature)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == signature:
            return hit[1]
    vocab = _Vocabulary.load(conn)
    with _cache_lock:
        if len(_cache) > 8:
            _cache.clear()
        _cache[key] = (signature, vocab)
    return vocab


# ----------------------------------------------------------------------------------------------- search


@dataclass
class _QueryWord:
    word: str
    exact: bool  # the word itself is in the vocabulary
    prefix: bool  # some longer vocabulary word starts with it
    fuzzy: dict[str, int]  # close spellings -> distance

    def fts_group(self) -> str | None:
        """This word's FTS5 OR-group, or None when nothing in the vocabulary matches it."""
        parts = []
        if self.exact:
            parts.append(f'"{self.word}"')
        if self.prefix:
            parts.append(f'"{self.word}"*')
        parts.extend(f'"{t}"' for t in self.fuzzy)
        return "(" + " OR ".join(parts) + ")" if parts else None

    def quality(self, token: str) -> float:
        if token == self.word:
            return EXACT
        if len(self.word) >= 2 and token.startswith(self.word):
            return PREFIX
        dist = self.fuzzy.get(token)
        if dist is None:
            return 0.0
        return FUZZY1 if dist <= 1 else FUZZY2


def _analyze(vocab: _Vocabulary, query_words: list[str], fuzzy_known: bool) -> list[_QueryWord]:
    """Expand each query word. Close spellings of words that are in the vocabulary are only looked up when
    ``fuzzy_known`` (a real word may still be a slip into another real word: one edit then)."""
    out = []
    for i, w in enumerate(query_words):
        exact = w in vocab.docs
        edits = max_edits(w)
        if exact:
            edits = min(edits, 1) if fuzzy_known else 0
        out.append(
            _QueryWord(
                word=w,
                exact=exact,
                prefix=len(w) >= 3 and (i == len(query_words) - 1 or not exact) and vocab.has_prefix(w),
                fuzzy=vocab.close_spellings(w, edits) if edits else {},
            )
        )
    return out


_COLUMNS = "t.id, t.title, ar.name, al.title, t.duration, t.popularity"
_JOINS = " LEFT JOIN artists ar ON ar.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id"
# Few matches: read them all (through the FTS index), most popular first.
_BY_MATCH_SQL = (
    f"SELECT {_COLUMNS} FROM (SELECT t.id AS id FROM track_search f JOIN tracks t ON t.id = f.rowid"
    " WHERE f.track_search MATCH ? ORDER BY t.popularity DESC, t.id LIMIT ?) c"
    f" JOIN tracks t ON t.id = c.id{_JOINS} ORDER BY t.popularity DESC, t.id"
)
# Many matches: walk the tracks from the most popular down and keep those in the match set; stops early.
_BY_POPULARITY_SQL = (
    f"SELECT {_COLUMNS} FROM tracks t INDEXED BY tracks_popularity{_JOINS}"
    " WHERE t.id IN (SELECT rowid FROM track_search WHERE track_search MATCH ?)"
    " ORDER BY t.popularity DESC, t.id LIMIT ?"
)
_COUNT_SQL = "SELECT count(*) FROM track_search WHERE track_search MATCH ?"


def _fetch(conn: sqlite3.Connection, expression: str, limit: int) -> list[tuple]:
    """The ``limit`` most popular tracks matching the FTS5 ``expression``.

    Counting the matches is cheap (a walk over the doclists, no row lookups); the count picks the plan so that
    neither a huge match set (common words) nor a tiny one costs more than a few milliseconds.
    """
    n = conn.execute(_COUNT_SQL, (expression,)).fetchone()[0]
    if n == 0:
        return []
    if n > BY_MATCH_MAX:
        try:
            return conn.execute(_BY_POPULARITY_SQL, (expression, limit)).fetchall()
        except sqlite3.OperationalError:  # a database from before the popularity index (opened readonly)
            pass
    return conn.execute(_BY_MATCH_SQL, (expression, limit)).fetchall()


def _candidates(conn: sqlite3.Connection, qwords: list[_QueryWord]) -> dict[int, tuple]:
    """Candidate rows {id: (id, title, artist, album, duration, popularity)} for the expanded query words.

    Tiers of growing tolerance, each a superset of the one before: every word exactly, then with prefixes and
    close spellings, then (only when those find nothing) any of the words. Each tier adds its most popular
    matches."""
    groups = [g for g in (qw.fts_group() for qw in qwords) if g]
    if not groups:
        return {}
    tiers = []
    if all(qw.exact for qw in qwords):
        tiers.append(" AND ".join(f'"{qw.word}"' for qw in qwords))
    if len(groups) == len(qwords) and not (tiers and not any(qw.prefix or qw.fuzzy for qw in qwords)):
        tiers.append(" AND ".join(groups))
    rows: dict[int, tuple] = {}
    for expression in tiers:
        if len(rows) >= CANDIDATES:
            break
        for r in _fetch(conn, expression, CANDIDATES):
            rows.setdefault(r[0], r)
    if not rows and (len(groups) > 1 or not tiers):
        for r in _fetch(conn, " OR ".join(groups), CANDIDATES):
            rows.setdefault(r[0], r)
    return rows


def _score(qwords: list[_QueryWord], query_words: list[str], title: str, artist: str | None, album: str | None) -> float:
    """Relevance of one track (see the module docstring); rounded so that ties are real ties."""
    fields = (words(title), words(artist), words(album))
    total = 0.0
    in_title = []  # quality of each query word's best match in the title
    for qw in qwords:
        best = 0.0
        for k, (weight, tokens) in enumerate(zip(FIELD_WEIGHTS, fields, strict=True)):
            if weight * EXACT <= best:
                break
            q = max((qw.quality(t) for t in tokens), default=0.0)
            if k == 0:
                in_title.append(q)
            if q * weight > best:
                best = q * weight
        total += best
    score = total / len(qwords)
    title_words = fields[0]
    n = len(query_words)
    if len(title_words) == n and len(in_title) == n and min(in_title) > 0 and PREFIX not in in_title:
        # the query is the title, word for word (allowing typos): the more exact, the larger the bonus
        score += TITLE_EXACT_BONUS * sum(in_title) / n
    elif len(title_words) >= n and title_words[: n - 1] == query_words[:-1] and title_words[n - 1].startswith(query_words[-1]):
        score += TITLE_PREFIX_BONUS
    return round(score, 6)


def search(conn: sqlite3.Connection, query: str, limit: int = 20, offset: int = 0) -> list[dict]:
    """Tracks matching ``query``, best first.

    Returns up to ``limit`` (capped at ``MAX_LIMIT``) dicts with id, title, artist, album, duration (seconds or
    None), popularity and score (higher is better; about 0-1.3), skipping the first ``offset`` results. The order
    is total and deterministic, so consecutive pages neither overlap nor skip; at most ``MAX_RESULTS`` results
    exist per query. An empty query (or one with no letters or digits) gives []; queries are truncated to
    ``MAX_QUERY_CHARS`` characters and ``MAX_QUERY_WORDS`` words; negative ``limit`` / ``offset`` count as 0.
    The query is never interpreted as SQL or FTS5 syntax: it is split into words, which are quoted.
    """
    limit = min(max(int(limit), 0), MAX_LIMIT)
    offset = max(int(offset), 0)
    if not query or limit == 0 or offset >= MAX_RESULTS:
        return []
    query = str(query)
    if len(query) > MAX_QUERY_CHARS:  # cut at a word boundary
        cut = query[:MAX_QUERY_CHARS]
        query = cut.rsplit(None, 1)[0] if query[MAX_QUERY_CHARS].isalnum() and " " in cut.strip() else cut
    query_words = list(dict.fromkeys(words(query)))[:MAX_QUERY_WORDS]
    if not query_words:
        return []
    vocab = _vocabulary(conn)
    qwords = _analyze(vocab, query_words, fuzzy_known=False)
    rows = _candidates(conn, qwords)
    if not rows and any(qw.exact and max_edits(qw.word) for qw in qwords):
        qwords = _analyze(vocab, query_words, fuzzy_known=True)
        rows.update((k, v) for k, v in _candidates(conn, qwords).items() if k not in rows)

    scored = []
    for tid, title, artist, album, duration, popularity in rows.values():
        score = _score(qwords, query_words, title, artist, album)
        if score > 0:
            scored.append((-score, -(popularity or 0.0), tid, title, artist, album, duration, popularity))
    scored.sort()
    page = scored[:MAX_RESULTS][offset : offset + limit]
    return [
        {
            "id": tid,
            "title": title,
            "artist": artist,
            "album": album,
            "duration": duration,
            "popularity": popularity,
            "score": -neg_score,
        }
        for neg_score, _, tid, title, artist, album, duration, popularity in page
    ]
