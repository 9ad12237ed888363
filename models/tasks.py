"""The four built-in tasks: seeded generators that return rows in the user-data format.

Each generator takes the dataset size, `seq_len` and a seeded `torch.Generator`, plus its own
keyword knobs, and returns {"input": ..., "target": ...} rows exactly as a user's JSONL file
would hold them, so built-in and user data share one encoding path (models.data).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Rows = list[dict]


def _int(gen: torch.Generator, high: int) -> int:
    """A uniform integer in [0, high)."""
    return int(torch.randint(high, (1,), generator=gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    return p > 0 and float(torch.rand(1, generator=gen)) < p


def _words(base: tuple[str, ...], count: int, prefix: str) -> list[str]:
    """`count` words: the readable base list first, then synthetic ones when it runs out."""
    return list(base[:count]) + [f"{prefix}{i}" for i in range(len(base), count)]


def binary(
    samples: int, seq_len: int, gen: torch.Generator, *, gap: float = 0.3, noise: float = 0.05
) -> Rows:
    """Concentric shells: a point of dimension `seq_len` -> 1 inside radius 1, else 0.

    Knobs: `samples`; `seq_len` = input dimension d; `gap` = empty margin between the inner
    ball (radius 0.2..1) and the outer shell (1+gap..2); `noise` = std of Gaussian noise added
    to every coordinate. No linear boundary separates the classes (a linear model scores ~50%).
    Example, d=2: {"input": [0.31, -0.52], "target": 1}, {"input": [1.12, 1.30], "target": 0}.
    """
    direction = torch.randn(samples, seq_len, generator=gen)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    label = torch.randint(2, (samples,), generator=gen)
    u = torch.rand(samples, generator=gen)
    radius = torch.where(label == 1, 0.2 + 0.8 * u, 1 + gap + (1 - gap) * u)
    points = direction * radius[:, None] + noise * torch.randn(samples, seq_len, generator=gen)
    return [
        {"input": point, "target": target}
        for point, target in zip(points.tolist(), label.tolist(), strict=True)
    ]


_POSITIVE = ("good", "great", "superb", "fun", "lovely")
_NEGATIVE = ("bad", "awful", "boring", "dull", "poor")
_FILLER = (
    "the", "movie", "plot", "was", "and", "actors", "it", "a", "story", "film", "really",
    "quite", "very", "so", "this", "that",
)


def sentiment(
    samples: int, seq_len: int, gen: torch.Generator, *, vocab: int = 12, noise: float = 0.0
) -> Rows:
    """Sentences -> "pos"/"neg", decided by one sentiment word, flipped by "not" just before it.

    Knobs: `samples`; `seq_len` = longest sentence (lengths are drawn from seq_len/2..seq_len)
    and dependency distance: the deciding word sits in the first half, so it lies at least a
    quarter of `seq_len` from the end; `vocab` = number of filler words; `noise` = probability
    that a label is flipped. Order matters: half the sentences hold a second "not" elsewhere,
    which changes nothing ("not good" is negative, "good ... not" stays positive).
    Example: {"input": ["the", "not", "good", "movie", "so", "not", "it"], "target": "neg"}.
    """
    filler = _words(_FILLER, vocab, "w")
    rows = []
    for _ in range(samples):
        length = max(3, (seq_len + 1) // 2 + _int(gen, seq_len // 2 + 1))
        tokens = [filler[_int(gen, len(filler))] for _ in range(length)]
        positive = _chance(gen, 0.5)
        word = (_POSITIVE if positive else _NEGATIVE)[_int(gen, len(_POSITIVE))]
        negated = _chance(gen, 0.5)
        at = 1 + _int(gen, max(1, length // 2 - 1))  # the word's index; room for "not" before
        tokens[at] = word
        if negated:
            tokens[at - 1] = "not"
        if _chance(gen, 0.5):  # a distractor "not" that does not precede the word
            spots = [i for i in range(length) if i not in (at - 1, at)]
            tokens[spots[_int(gen, len(spots))]] = "not"
        label = positive != negated
        if _chance(gen, noise):
            label = not label
        rows.append({"input": tokens, "target": "pos" if label else "neg"})
    return rows


_SHAPES = {
    "ring": ((1, 1, 1), (1, 0, 1), (1, 1, 1)),
    "plus": ((0, 1, 0), (1, 1, 1), (0, 1, 0)),
    "cross": ((1, 0, 1), (0, 1, 0), (1, 0, 1)),
    "bar": ((0, 0, 0), (1, 1, 1), (0, 0, 0)),
    "block": ((1, 1, 1), (1, 1, 1), (1, 1, 1)),
}
_PLACES = (
    "top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom",
    "bottom-right",
)


def captioning(
    samples: int, seq_len: int, gen: torch.Generator, *, cell: int = 3, vocab: int = 5,
    noise: float = 0.1,
) -> Rows:
    """Images of 3x3-pixel shapes on a 3x3 grid of cells -> "<shape> <place>" per shape.

    Knobs: `samples`; `seq_len` = longest caption in words (two per shape, so up to
    seq_len // 2 shapes, at most 9); `cell` = cell side in pixels (3..5, image side 3*cell,
    9x9 to 15x15; above 3 each shape sits at a random offset inside its cell, which makes
    the task markedly harder); `vocab` = number of shape kinds (1..5); `noise` = std of
    Gaussian pixel noise. Captions list the shapes in reading order.
    Example (cell 3, 9x9 image flattened row by row, noise left out): a plus in the top-left
    cell and a ring in the center -> {"input": [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, ...
    81 numbers], "target": ["plus", "top-left", "ring", "center"]}.
    """
    names = list(_SHAPES)[: max(1, min(vocab, len(_SHAPES)))]
    most = max(1, min(len(_PLACES), seq_len // 2))
    side = 3 * cell
    rows = []
    for _ in range(samples):
        image = noise * torch.randn(side, side, generator=gen)
        count = 1 + _int(gen, most)
        cells = sorted(torch.randperm(len(_PLACES), generator=gen)[:count].tolist())
        caption = []
        for place in cells:
            name = names[_int(gen, len(names))]
            top = (place // 3) * cell + _int(gen, cell - 2)
            left = (place % 3) * cell + _int(gen, cell - 2)
            image[top : top + 3, left : left + 3] += torch.tensor(_SHAPES[name])
            caption += [name, _PLACES[place]]
        rows.append({"input": image.flatten().tolist(), "target": caption})
    return rows


_NOUNS = ("cat", "dog", "bird", "fish", "fox", "cow", "owl", "bee")
_ADJECTIVES = ("big", "small", "red", "blue", "old", "young", "fast", "slow")
_VERBS = ("sees", "likes", "chases", "bites", "finds", "helps")
_NOUNS_T = ("neko", "inu", "tori", "sakana", "kitsune", "ushi", "fukuro", "hachi")
_ADJECTIVES_T = ("ooki", "chiisa", "aka", "ao", "furu", "waka", "haya", "oso")
_VERBS_T = ("miru", "suku", "ou", "kamu", "mitsu", "tasu")


def translation(
    samples: int, seq_len: int, gen: torch.Generator, *, vocab: int = 6, noise: float = 0.0
) -> Rows:
    """English-like subject-verb-object sentences -> a made-up subject-object-verb language.

    Source: det adj* noun verb det adj* noun (det "the" or "a"). Target: each noun phrase
    becomes noun adj* with the adjectives reversed, "the" vanishes, "a" becomes "ichi" after
    its phrase, the object takes the particle "o" and the verb moves to the end, so words,
    order and length all change. Knobs: `samples`; `seq_len` = longest source sentence
    (5 + up to (seq_len - 5) // 2 adjectives per phrase); `vocab` = number of nouns and of
    adjectives (verbs: half as many, at least 2); `noise` = probability that a target word is
    replaced by a random target word.
    Example: {"input": ["the", "big", "red", "cat", "sees", "a", "dog"],
    "target": ["neko", "aka", "ooki", "inu", "ichi", "o", "miru"]}.
    """
    nouns = _words(_NOUNS, vocab, "n")
    adjectives = _words(_ADJECTIVES, vocab, "j")
    verbs = _words(_VERBS, max(2, vocab // 2), "v")
    lexicon = dict(zip(nouns, _words(_NOUNS_T, vocab, "nt"), strict=True))
    lexicon |= dict(zip(adjectives, _words(_ADJECTIVES_T, vocab, "jt"), strict=True))
    lexicon |= dict(zip(verbs, _words(_VERBS_T, len(verbs), "vt"), strict=True))
    most_adjectives = max(0, (seq_len - 5) // 2)
    target_words = sorted(set(lexicon.values()) | {"ichi", "o"})

    def phrase() -> tuple[list[str], list[str]]:
        definite = _chance(gen, 0.5)
        adjs = [adjectives[_int(gen, vocab)] for _ in range(_int(gen, most_adjectives + 1))]
        noun = nouns[_int(gen, vocab)]
        source = ["the" if definite else "a", *adjs, noun]
        target = [lexicon[noun], *(lexicon[a] for a in reversed(adjs))]
        return source, target + ([] if definite else ["ichi"])

    rows = []
    for _ in range(samples):
        (subject, subject_t), verb = phrase(), verbs[_int(gen, len(verbs))]
        obj, obj_t = phrase()
        target = [*subject_t, *obj_t, "o", lexicon[verb]]
        target = [
            target_words[_int(gen, len(target_words))] if _chance(gen, noise) else word
            for word in target
        ]
        rows.append({"input": [*subject, verb, *obj], "target": target})
    return rows


GENERATORS: dict[str, Callable[[int, int, torch.Generator], Rows]] = {
    "binary": binary,
    "sentiment": sentiment,
    "captioning": captioning,
    "translation": translation,
}
