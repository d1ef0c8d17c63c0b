"""Built-in generated corpora, so the examples run with no download and what the model
learned can be measured exactly.

``word_class_corpus``: sentences from a small grammar whose content words fall into
known classes (colours, numbers, animals, foods, places, ...). A word's class is only
visible through the contexts it appears in, so a masked-language model that learns
good embeddings puts words of one class next to each other.

``sentiment_corpus``: short reviews made of clauses with positive/negative words,
intensifiers and negation ("not good", "never boring"); the label is the polarity of
its clauses *after* negation, so counting words cannot reach full accuracy: the
encoder has to read "not" next to the adjective.
"""
from __future__ import annotations

import numpy as np

WORD_CLASSES = {
    "colour": "red blue green yellow white black brown purple orange grey".split(),
    "number": "two three four five six seven eight nine ten twelve".split(),
    "animal": "cat dog horse cow sheep goat fox rabbit mouse owl".split(),
    "food": "bread cheese rice soup apples cake beans pasta salad eggs".split(),
    "place": "kitchen garden market school park village forest river library station".split(),
    "person": "alice bob marie paul anna tom lucy peter emma leo".split(),
    "day": "monday tuesday wednesday thursday friday saturday sunday".split(),
    "food_verb": "ate cooked bought sold made shared wanted cut".split(),
    "move_verb": "ran walked jumped swam hurried wandered crawled rushed".split(),
    "adjective": "big small old young tall tiny happy quiet".split(),
}

TEMPLATES = [
    "{person} {food_verb} {number} {colour} {food} at the {place} on {day} .",
    "the {adjective} {animal} {move_verb} to the {place} .",
    "{person} saw a {colour} {animal} near the {place} .",
    "on {day} , {person} and {person} {food_verb} some {food} .",
    "{number} {animal} and {number} {animal} live in the {place} .",
    "my {animal} likes {food} , but your {animal} likes {food} .",
    "the {place} is {colour} and the {place} is {colour} .",
    "{person} was {adjective} on {day} because the {animal} {move_verb} away .",
    "every {day} the {adjective} {animal} eats {number} {food} .",
    "{person} {move_verb} from the {place} to the {place} with {number} {colour} {animal} .",
]


def word_class_corpus(n_sentences: int = 20000, seed: int = 0) -> list[str]:
    """``n_sentences`` sentences from TEMPLATES, every slot filled uniformly from its class."""
    rng = np.random.default_rng(seed)
    sentences = []
    for t in rng.integers(0, len(TEMPLATES), n_sentences):
        words = []
        for token in TEMPLATES[t].split():
            if token.startswith("{"):
                options = WORD_CLASSES[token[1:-1]]
                token = options[rng.integers(len(options))]
            words.append(token)
        sentences.append(" ".join(words))
    return sentences


# what the MLM example asks a model trained on word_class_corpus: each probe word's
# neighbours should be its class's words, each <mask> a word of the class the template puts there
PROBE_WORDS = ["red", "three", "cat", "bread", "kitchen", "alice", "monday", "ate"]
FILL_MASK_SENTENCES = ["alice ate three <mask> apples at the market on monday .", "the old <mask> ran to the garden .",
                       "on friday , tom and emma cooked some <mask> .", "the kitchen is red and the <mask> is blue ."]


def word_class_of() -> dict[str, str]:
    """{word: class name} for every class word of the built-in corpus."""
    return {w: c for c, words in WORD_CLASSES.items() for w in words}


POSITIVE = "good great wonderful brilliant fun moving clever beautiful charming gripping".split()
NEGATIVE = "bad boring awful dull terrible weak silly ugly clumsy tedious".split()
ASPECTS = "film story acting plot ending music script cast direction dialogue".split()
INTENSIFIERS = ["very", "really", "quite", "truly", "rather", "so"]


def _clause(rng):
    """One clause and its polarity (+1 / -1) after negation."""
    positive = rng.random() < 0.5
    adjective = (POSITIVE if positive else NEGATIVE)[rng.integers(10)]
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    polarity = 1 if positive else -1
    form = rng.integers(5)
    if form == 0:
        words = ["the", aspect, "was", adjective]
    elif form == 1:
        words = ["the", aspect, "was", INTENSIFIERS[rng.integers(len(INTENSIFIERS))], adjective]
    elif form == 2:
        words, polarity = ["the", aspect, "was", "not", adjective], -polarity
    elif form == 3:
        words, polarity = ["it", "was", "never", adjective], -polarity
    else:
        words, polarity = ["the", aspect, "was", "not", "at", "all", adjective], -polarity
    return words, polarity


def sentiment_corpus(n_reviews: int = 4000, seed: int = 0):
    """(texts, labels) with labels 1 = positive, 0 = negative, exact by construction.

    A review has one or two clauses that agree in polarity after negation ("the plot was
    not boring and the cast was great" is positive), so about half of all adjectives
    appear negated and a bag of words cannot tell "good" from "not good"."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n_reviews):
        words, polarity = _clause(rng)
        if rng.random() < 0.5:
            while True:
                second, second_polarity = _clause(rng)
                if second_polarity == polarity:
                    break
            words = words + [["and", ",", "; also"][rng.integers(3)]] + second
        texts.append(" ".join(words) + " .")
        labels.append(int(polarity > 0))
    return texts, np.array(labels, dtype=np.int64)
