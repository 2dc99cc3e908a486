"""A built-in demo corpus of invented facts, with one question per chunk.

Why invented: a question a model can answer from pre-training does not test the search tool.
Every place, organisation, person, instrument, ship, mountain, guild and festival here is made up,
so the only way to the answer is through the corpus.

How it stays fast and unambiguous at a million chunks:
- each chunk is about one entity whose name is built from syllables indexed by the chunk number
  through a seeded bijection, so names never repeat (up to `capacity()` chunks) and are single
  tokens a BM25 search for the question finds;
- the other names in a chunk (people, towns, comets) come from small pools whose words all contain
  a 'w' or a 'y', letters the entity syllables never use, so they can never equal an entity name;
- randomness is drawn from numpy in fixed-size blocks, so chunk i is the same whatever n is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.data.records import Chunk, Question

DEFAULT_DEMO_CHUNKS = 200
"""Chunks in the default demo: small enough to index instantly, large enough to be a search."""

_BLOCK = 4096
_WIDTH = 16

# Entity-name syllables: no 'w' or 'y', single-letter vowels, so onset+vowel / consonant+vowel+
# coda / vowel+coda split a name back into its parts in one way only (the encoding is injective).
_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "pr", "r", "s",
           "t", "tr", "v", "z", "st")
_VOWELS = ("a", "e", "i", "o", "u")
_MID_CONSONANTS = ("l", "m", "n", "r", "s", "t", "v", "d", "k", "th", "sk", "nd")
_MID_CODAS = ("n", "r", "l")
_END_CODAS = ("n", "r", "s", "th", "x", "nd", "rk", "m", "sk", "sh", "lt", "ff")

# Pools for secondary names: every word contains 'w' or 'y'.
_GIVEN = ("Wenna", "Tyrel", "Ysmae", "Corwyn", "Elwen", "Mayra", "Idwal", "Sywell", "Yorin", "Bryony",
          "Gwendal", "Ywain", "Lyssa", "Dewin", "Aylin", "Wystan", "Rhoswen", "Kyra", "Owain", "Tywin",
          "Eryn", "Marwen", "Yvel", "Sawyer", "Lowri", "Dylis", "Wyatt", "Ysolt", "Cywen", "Merryn")
_SUR_HEADS = ("Wyn", "Bry", "Tyr", "Gwel", "Yar", "Wel", "Syl", "Kyr", "Dwy", "Rhy", "Lyn", "Hew")
_SUR_TAILS = ("dal", "mere", "holt", "ric", "stan", "vane", "ford", "brook", "gard", "lin", "more", "cott")
_PLACE_HEADS = ("Yssel", "Wend", "Bryn", "Caw", "Tyw", "Ayl", "Myr", "Wex", "Syr", "Lyd", "Owl", "Yar")
_PLACE_TAILS = ("mouth", "haven", "dale", "moor", "ford", "wick", "by", "mere", "stead", "port", "holm")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_WOODS = ("walnut", "maple", "pear", "cherry", "spruce", "juniper", "olive", "ash")
_CRAFTS = ("Glassmakers", "Ropemakers", "Bellfounders", "Clockmakers", "Dyers", "Mapmakers", "Tanners")
_ANIMALS = ("heron", "fox", "stag", "otter", "lynx", "crane", "hare", "owl")
_COLOURS = ("silver", "green", "scarlet", "blue", "golden", "black")
_PRODUCTS = ("smoked eel", "salt cod", "blue cheese", "linen", "honey cakes", "copper pans", "rope")
_PROFESSIONS = ("composer", "cartographer", "engineer", "botanist", "painter")
_WORKS = {"composer": ("symphony", "performed"), "cartographer": ("atlas", "printed"),
          "engineer": ("bridge", "opened"), "botanist": ("herbal", "published"),
          "painter": ("altarpiece", "unveiled")}

Fact = tuple[str, str, str]
"""(sentence, question, answer): a sentence of the chunk and the question it answers."""


@dataclass(frozen=True)
class _Tables:
    """Syllable tables and name pools, built per call (microseconds) instead of at import."""

    first: tuple[str, ...]
    middle: tuple[str, ...]
    last: tuple[str, ...]
    people: tuple[str, ...]
    places: tuple[str, ...]

    @classmethod
    def build(cls) -> _Tables:
        first = tuple(o + v for o in _ONSETS for v in _VOWELS)
        middle = tuple(c + v + k for c in _MID_CONSONANTS for v in _VOWELS for k in _MID_CODAS)
        last = tuple(v + k for v in _VOWELS for k in _END_CODAS)
        surnames = [h + t for h in _SUR_HEADS for t in _SUR_TAILS]
        people = tuple(f"{g} {s}" for i, g in enumerate(_GIVEN) for s in surnames[i % 7::7])
        places = tuple(h + t for h in _PLACE_HEADS for t in _PLACE_TAILS)
        return cls(first, middle, last, people, places)

    @property
    def capacity(self) -> int:
        return len(self.first) * len(self.middle) * len(self.last)


def capacity() -> int:
    """How many chunks can have distinct entity names (a little over a million)."""
    return _Tables.build().capacity


class _Names:
    """Entity name of chunk i: a seeded affine bijection of i, spelled in three syllables."""

    def __init__(self, tables: _Tables, seed: int):
        self.tables = tables
        cap = tables.capacity
        rng = np.random.default_rng([seed, 0])
        mult = int(rng.integers(cap // 3, cap))
        while np.gcd(mult, cap) != 1:
            mult += 1
        self.mult, self.offset, self.cap = mult, int(rng.integers(0, cap)), cap

    def __call__(self, i: int) -> str:
        t = self.tables
        p = (self.mult * i + self.offset) % self.cap
        p, a = divmod(p, len(t.first))
        c, b = divmod(p, len(t.middle))
        return (t.first[a] + t.middle[b] + t.last[c]).capitalize()


def entity_names(n_chunks: int, seed: int = 0) -> list[str]:
    """The invented name each of the first n_chunks demo chunks is about (capitalised; the
    instrument kind writes it in lower case). Distinct for any n_chunks up to capacity()."""
    tables = _Tables.build()
    _check(n_chunks, seed, tables)
    names = _Names(tables, seed)
    return [names(i) for i in range(n_chunks)]


def _pick(seq: tuple[str, ...], r: int) -> str:
    return seq[r % len(seq)]


def _either(r: int, bit: int, first: str, second: str) -> str:
    """One of two phrasings of the same sentence, so chunks of one kind do not all read alike."""
    return second if (r >> bit) & 1 else first


def _observatory(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    island, founder, comet = _pick(t.places, r[2]), _pick(t.people, r[3]), _pick(t.places, r[4])
    director = _pick(t.people, r[10])
    year, mirror, staff = 1690 + r[5] % 200, 40 + r[6] % 260, 12 + r[7] % 180
    seen, nights = year + 5 + r[8] % 60, 90 + r[11] % 200
    v = r[13]
    opener = _either(v, 0, f"The {x} Observatory is a research observatory on the island of {island}.",
                     f"On a granite ridge of the island of {island} stands the {x} Observatory, above the harbour.")
    return opener, [
        (f"It was founded in {year} by the astronomer {founder}, who paid for the first dome from a private fortune.",
         f"In what year was the {x} Observatory founded?", str(year)),
        (f"Its present director, {director}, moved there from the mainland to run the winter surveys.",
         f"Who is the present director of the {x} Observatory?", director),
        (_either(v, 1, f"Its largest telescope has a mirror {mirror} centimetres across.",
                 f"The mirror of its largest telescope measures {mirror} centimetres across."),
         f"How many centimetres across is the mirror of the largest telescope at the {x} Observatory?",
         str(mirror)),
        (f"In {seen} its staff catalogued the comet now called {comet}, after a week of cloudless nights.",
         f"What is the name of the comet catalogued by the staff of the {x} Observatory?", comet),
        (f"About {staff} people work there today, most of them on night shifts.",
         f"How many people work at the {x} Observatory today?", str(staff)),
        (f"The sky is clear enough for observing on roughly {nights} nights a year.",
         f"On roughly how many nights a year is the sky clear enough for observing at the {x} Observatory?",
         str(nights)),
        ("Visitors reach it by a ferry that runs twice a week in summer.",
         f"On which island is the {x} Observatory?", island),
    ]


def _town(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    lake, mayor, day = _pick(t.places, r[2]), _pick(t.people, r[3]), _pick(_WEEKDAYS, r[4])
    product, pop, census, charter = _pick(_PRODUCTS, r[5]), 800 + r[6] % 90000, 1950 + r[7] % 70, 1400 + r[8] % 400
    side = _pick(("northern", "southern", "eastern", "western"), r[9])
    twin, bridges = _pick(t.places, r[10]), 2 + r[11] % 11
    v = r[13]
    opener = _either(v, 0, f"{x} is a market town on the {side} shore of Lake {lake}.",
                     f"On the {side} shore of Lake {lake} lies {x}, an old market town of slate roofs.")
    return opener, [
        (f"At the census of {census} it had {pop} inhabitants, a figure that has barely changed since.",
         f"How many inhabitants did the town of {x} have at its census of {census}?", str(pop)),
        (_either(v, 1, f"It received its town charter in {charter}.",
                 f"Its town charter, still kept in the council chamber, dates from {charter}."),
         f"In what year did {x} receive its town charter?", str(charter)),
        (f"The town is known for its {product}, sold at a market held every {day} in the square.",
         f"On which day of the week is the market held in {x}?", day),
        (f"Its current mayor is {mayor}, elected after a close vote.",
         f"Who is the current mayor of {x}?", mayor),
        (f"{bridges} stone bridges cross the stream that runs through the old quarter.",
         f"How many stone bridges cross the stream in the old quarter of {x}?", str(bridges)),
        (f"Since the war it has been twinned with the river port of {twin}.",
         f"With which river port is the town of {x} twinned?", twin),
        ("Fishing boats still leave from the old stone quay at dawn.",
         f"On the shore of which lake does the town of {x} stand?", lake),
    ]


def _person(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    given, port, place = _pick(_GIVEN, r[2]), _pick(t.places, r[3]), _pick(t.places, r[4])
    job = _pick(_PROFESSIONS, r[5])
    work, verb = _WORKS[job]
    born = 1640 + r[6] % 300
    made, died, years = born + 25 + r[7] % 20, born + 50 + r[8] % 40, 3 + r[9] % 30
    title, teacher, pupils = _pick(t.places, r[10]), _pick(t.people, r[14]), 2 + r[15] % 40
    she, her = ("She", "Her") if r[11] % 2 else ("He", "His")
    full, v = f"{given} {x}", r[13]
    opener = _either(v, 0, f"{full} was a {job} born in {born} in the port of {port}.",
                     f"Born in the port of {port} in {born}, {full} became one of the best-known {job}s of the age.")
    return opener, [
        (f"{her} best-known {work}, the {title} {work.capitalize()}, was {verb} in {made}.",
         f"In what year was the {title} {work} by {full} {verb}?", str(made)),
        (f"{she} spent {years} years working in the city of {place}.",
         f"For how many years did {full} work in the city of {place}?", str(years)),
        (f"{she} learned the trade as an apprentice to {teacher}.",
         f"To whom was the {job} {full} apprenticed?", teacher),
        (f"{she} took on {pupils} pupils over a long career, several of whom outdid their teacher.",
         f"How many pupils did the {job} {full} take on?", str(pupils)),
        (_either(v, 1, f"{she} died in {died}, leaving notebooks that are still being catalogued.",
                 f"When {she.lower()} died in {died}, {her.lower()} notebooks went to a small library."),
         f"In what year did the {job} {full} die?", str(died)),
        (f"Records from {port} describe a childhood spent among shipwrights.",
         f"In which port was the {job} {full} born?", port),
    ]


def _instrument(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    name = x.lower()
    valley, maker, wood = _pick(t.places, r[2]), _pick(t.people, r[3]), _pick(_WOODS, r[4])
    strings, year, length = 3 + r[5] % 14, 1500 + r[6] % 350, 40 + r[7] % 120
    kind, players = _pick(("bowed", "plucked", "struck"), r[8]), 20 + r[9] % 500
    dance, v = _pick(t.places, r[10]), r[13]
    opener = _either(v, 0, f"The {name} is a {kind} string instrument from the valley of {valley}.",
                     f"In the valley of {valley} the {name}, a {kind} string instrument, is played at every wedding.")
    return opener, [
        (f"It has {strings} strings, tuned in pairs except for the lowest.",
         f"How many strings does the {name} have?", str(strings)),
        (f"Tradition credits its design to the luthier {maker}, around {year}.",
         f"Which luthier is credited with designing the {name}?", maker),
        (_either(v, 1, f"Its body is carved from a single block of {wood} wood.",
                 f"Makers carve its body from one block of {wood} wood and leave it unvarnished."),
         f"From which wood is the body of the {name} carved?", wood),
        (f"A typical {name} measures {length} centimetres from end to end.",
         f"How long, in centimetres, is a typical {name}?", str(length)),
        (f"Fewer than {players} people are thought to play it well today.",
         f"How many people are thought to play the {name} well today, at most?", str(players)),
        (f"The slow dance called the {dance} is rarely played on anything else.",
         f"Which slow dance is traditionally played on the {name}?", dance),
        ("Players hold it upright between the knees.",
         f"From which valley does the {name} come?", valley),
    ]


def _ship(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    yard, captain, wreck = _pick(t.places, r[2]), _pick(t.people, r[3]), _pick(t.places, r[4])
    launched, tonnes, crew = 1780 + r[5] % 150, 200 + r[6] % 1800, 9 + r[7] % 60
    lost, cargo, voyages = launched + 4 + r[8] % 40, _pick(_PRODUCTS, r[9]), 3 + r[10] % 60
    v = r[13]
    opener = _either(v, 0, f"The {x} was a three-masted barque launched in {launched} at the yards of {yard}.",
                     f"Launched at the yards of {yard} in {launched}, the {x} was a three-masted barque.")
    return opener, [
        (f"She displaced {tonnes} tonnes and carried a crew of {crew}.",
         f"How many tonnes did the barque {x} displace?", str(tonnes)),
        (f"Her longest-serving master was Captain {captain}, who kept a careful log.",
         f"Who was the longest-serving captain of the barque {x}?", captain),
        (f"She made {voyages} voyages, most of them carrying {cargo} to the southern ports.",
         f"How many voyages did the barque {x} make?", str(voyages)),
        (_either(v, 1, f"She was lost in a storm off {wreck} in {lost}.",
                 f"A storm off {wreck} sank her in {lost}; all hands were saved."),
         f"In what year was the barque {x} lost?", str(lost)),
        ("A model of her hull hangs in the harbour chapel.",
         f"At which yards was the barque {x} launched?", yard),
    ]


def _mountain(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    climber, hut, valley = _pick(t.people, r[2]), _pick(t.people, r[3]), _pick(t.places, r[4])
    height, first, lakes = 1800 + r[5] % 4200, 1820 + r[6] % 150, 2 + r[7] % 9
    glacier, v = _pick(t.places, r[8]), r[13]
    opener = _either(v, 0, f"Mount {x} rises to {height} metres above the valley of {valley}.",
                     f"Above the valley of {valley}, Mount {x} reaches a height of {height} metres.")
    return opener, [
        (f"It was first climbed by {climber}, who reached the summit alone.",
         f"Who made the first ascent of Mount {x}?", climber),
        (f"The first ascent was made in {first} and took four days.",
         f"In what year was Mount {x} first climbed?", str(first)),
        (f"{lakes} small glacial lakes lie on its northern flank.",
         f"How many glacial lakes lie on the northern flank of Mount {x}?", str(lakes)),
        (f"The mountain hut below the summit is named after {hut}.",
         f"After whom is the mountain hut below the summit of Mount {x} named?", hut),
        (f"Its eastern face is cut by the {glacier} glacier, which has retreated for a century.",
         f"Which glacier cuts the eastern face of Mount {x}?", glacier),
        ("Snow lies on the upper slopes until midsummer.",
         f"How high, in metres, does Mount {x} rise?", str(height)),
    ]


def _guild(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    craft, city, master = _pick(_CRAFTS, r[2]), _pick(t.places, r[3]), _pick(t.people, r[4])
    year, members = 1300 + r[5] % 500, 20 + r[6] % 900
    emblem = f"{_pick(_COLOURS, r[7])} {_pick(_ANIMALS, r[8])}"
    fee, day, v = 2 + r[9] % 90, _pick(_WEEKDAYS, r[10]), r[13]
    opener = _either(v, 0, f"The {x} Guild of {craft} was established in the city of {city}.",
                     f"Among the trade bodies of {city}, the {x} Guild of {craft} is one of the oldest.")
    return opener, [
        (f"Its charter is dated {year}.", f"In what year is the charter of the {x} Guild dated?", str(year)),
        (f"The guild counts {members} members, apprentices included.",
         f"How many members does the {x} Guild have?", str(members)),
        (_either(v, 1, f"Its emblem is a {emblem} on a plain field.",
                 f"A {emblem} on a plain field serves as its emblem."),
         f"What animal appears on the emblem of the {x} Guild?", emblem.split()[1]),
        (f"The present guildmaster is {master}.", f"Who is the present guildmaster of the {x} Guild?", master),
        (f"New members pay an entry fee of {fee} silver marks.",
         f"How many silver marks must a new member of the {x} Guild pay?", str(fee)),
        (f"Its members meet every {day} evening in the upper hall.",
         f"On which evening of the week do members of the {x} Guild meet?", day),
        ("Its hall burned once and was rebuilt in stone.",
         f"In which city was the {x} Guild established?", city),
    ]


def _festival(x: str, r: list[int], t: _Tables) -> tuple[str, list[Fact]]:
    town, founder, month = _pick(t.places, r[2]), _pick(t.people, r[3]), _pick(_MONTHS, r[4])
    first, visitors, boats = 1700 + r[5] % 300, 500 + r[6] % 40000, 4 + r[7] % 40
    dish, winner, v = _pick(_PRODUCTS, r[8]), _pick(t.people, r[9]), r[13]
    opener = _either(v, 0, f"The {x} Festival is held every {month} in the town of {town}.",
                     f"Every {month} the town of {town} fills up for the {x} Festival.")
    return opener, [
        (f"It was first held in {first}.", f"In what year was the {x} Festival first held?", str(first)),
        (f"The idea for it came from {founder}, a local innkeeper.",
         f"Who suggested holding the first {x} Festival?", founder),
        (f"Around {visitors} visitors come each year.",
         f"About how many visitors come to the {x} Festival each year?", str(visitors)),
        (_either(v, 1, f"Its highlight is a race of {boats} painted boats across the harbour.",
                 f"The race of {boats} painted boats across the harbour closes the first day."),
         f"How many boats take part in the race at the {x} Festival?", str(boats)),
        (f"Stalls sell {dish} all week, and last year's boat race was won by {winner}.",
         f"Who won last year's boat race at the {x} Festival?", winner),
        ("Lanterns are hung along every street on the last night.",
         f"In which month is the {x} Festival held?", month),
    ]


_KINDS = (_observatory, _town, _person, _instrument, _ship, _mountain, _guild, _festival)


def _compose(i: int, name: str, r: list[int], tables: _Tables) -> tuple[str, Fact]:
    """The chunk text of entity i and the fact its question asks about.

    One fact is asked; of the others one may be left out, so chunks differ in shape. A fact's
    sentence may be a plain remark (the answer then lives in the opener), which keeps questions
    about the opener's facts possible without repeating them.
    """
    opener, facts = _KINDS[r[0] % len(_KINDS)](name, r, tables)
    asked = r[1] % len(facts)
    dropped = r[12] % (len(facts) + 2)  # an index past the end drops nothing
    kept = [f for j, f in enumerate(facts) if j == asked or j != dropped]
    return " ".join([opener, *(f[0] for f in kept)]), facts[asked]


def _check(n_chunks: int, seed: int, tables: _Tables) -> None:
    if not isinstance(n_chunks, int) or n_chunks < 0:
        raise ValueError(f"n_chunks must be a non-negative integer, got {n_chunks!r}")
    if n_chunks > tables.capacity:
        raise ValueError(f"at most {tables.capacity} demo chunks have distinct names, asked for {n_chunks}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _iter_demo(n_chunks: int, seed: int) -> Iterator[tuple[Chunk, Question]]:
    tables = _Tables.build()
    _check(n_chunks, seed, tables)
    names = _Names(tables, seed)
    rng = np.random.default_rng([seed, 1])
    for start in range(0, n_chunks, _BLOCK):
        block = rng.integers(0, 2**31 - 1, size=(_BLOCK, _WIDTH), dtype=np.int64).tolist()
        for i in range(start, min(start + _BLOCK, n_chunks)):
            text, (_, question, answer) = _compose(i, names(i), block[i - start], tables)
            chunk = Chunk(id=f"demo-{i:06d}", text=text, source="demo")
            yield chunk, Question(id=f"demo-q{i:06d}", question=question, answer=answer, chunk_content=text)


def iter_demo_chunks(n_chunks: int, seed: int = 0) -> Iterator[Chunk]:
    """Yield the demo corpus chunk by chunk; chunk i is the same for any n_chunks >= i + 1."""
    for chunk, _ in _iter_demo(n_chunks, seed):
        yield chunk


def generate_demo(n_chunks: int, seed: int = 0) -> tuple[list[Chunk], list[Question]]:
    """The demo corpus and its questions, one per chunk, in chunk order.

    Each question names its chunk's entity, its answer is a short string found verbatim in the
    chunk, and its chunk_content is the chunk's text, so the chunk-hit reward works on it.
    """
    chunks: list[Chunk] = []
    questions: list[Question] = []
    for chunk, question in _iter_demo(n_chunks, seed):
        chunks.append(chunk)
        questions.append(question)
    return chunks, questions


def default_demo() -> tuple[list[Chunk], list[Question]]:
    """The demo the CLI uses when no corpus is given: 200 chunks, seed 0."""
    return generate_demo(DEFAULT_DEMO_CHUNKS, seed=0)
