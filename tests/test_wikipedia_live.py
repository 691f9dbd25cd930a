"""The live Wikipedia backend, offline: httpx.MockTransport replays MediaWiki API responses (fixtures in
tests/fixtures/wiki/, written in the API's real shapes), including faults. No test touches the network."""

import json
from pathlib import Path

import httpx
import pytest

from agentkit.tools.wikipedia import DEFAULT_USER_AGENT, USER_AGENT_ENV, LiveWikipedia, WikiSession, make_backend

FIXTURES = Path(__file__).parent / "fixtures" / "wiki"


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


PAGES = {
    "marie curie": "extracts_marie_curie",
    "mercury": "extracts_mercury_disambiguation",
    "empty stub": "extracts_empty_page",
}


class FakeMediaWiki:
    """A MockTransport handler: answers prop=extracts and list=search like en.wikipedia.org/w/api.php.

    ``faults`` is a list of responses (or exceptions) served before the normal answers, one per request.
    """

    def __init__(self, faults=()):
        self.faults = list(faults)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        assert request.url.host == "en.wikipedia.org" and request.url.path == "/w/api.php"
        params = request.url.params
        assert params["format"] == "json" and params["action"] == "query"
        if params.get("list") == "search":
            return httpx.Response(200, json=fixture("search_flurbington"))
        assert params["prop"] == "extracts" and params["explaintext"] == "1"
        return httpx.Response(200, json=fixture(PAGES.get(params["titles"].lower(), "extracts_missing")))

    @property
    def params(self):
        return [dict(r.url.params) for r in self.requests]


def live(handler, tmp_path=None, **kwargs):
    kwargs.setdefault("retry_wait", 0)
    kwargs.setdefault("max_retries", 2)
    cache = tmp_path / "cache" if tmp_path is not None else False
    return LiveWikipedia(transport=httpx.MockTransport(handler), cache_dir=cache, **kwargs)


# ---------------------------------------------------------------- normal answers
def test_search_follows_the_redirect_and_shows_five_sentences():
    wiki = FakeMediaWiki()
    session = WikiSession(live(wiki))
    obs = session.search("marie curie")
    assert obs.startswith("Maria Salomea Sk\u0142odowska-Curie (7 November 1867 \u2013 4 July 1934)")
    assert obs.endswith("She was born in Warsaw, in what was then the Kingdom of Poland, part of the Russian Empire.")
    assert obs.count(". ") == 4  # five sentences
    assert session.page.title == "Marie Curie"  # the API's resolved title
    assert wiki.params[0]["titles"] == "marie curie" and wiki.params[0]["redirects"] == "1"


def test_user_agent_is_sent_and_configurable(monkeypatch):
    wiki = FakeMediaWiki()
    monkeypatch.delenv(USER_AGENT_ENV, raising=False)
    live(wiki).page("Marie Curie")
    live(wiki, user_agent="my-lab-bot/2.0 (me@example.org)").page("Marie Curie")
    monkeypatch.setenv(USER_AGENT_ENV, "env-bot/1.0 (env@example.org)")
    live(wiki).page("Marie Curie")
    agents = [r.headers["User-Agent"] for r in wiki.requests]
    assert agents[0].startswith(DEFAULT_USER_AGENT)
    assert agents[1].startswith("my-lab-bot/2.0 (me@example.org)")
    assert agents[2].startswith("env-bot/1.0 (env@example.org)")


def test_lookup_reaches_the_sections_after_the_intro():
    session = WikiSession(live(FakeMediaWiki()))
    session.search("Marie Curie")
    assert session.lookup("chemistry") == (
        "(Result 1 / 1) In 1911 she received a second Nobel Prize, this time in Chemistry, "
        "for the discovery of polonium and radium."
    )
    assert session.lookup("Warsaw").startswith("(Result 1 / 3) She was born in Warsaw")


def test_missing_page_lists_search_results_as_similar():
    wiki = FakeMediaWiki()
    obs = WikiSession(live(wiki)).search("Qwxzy flurbington")
    assert obs == "Could not find Qwxzy flurbington. Similar: ['Flurbington Abbey', 'Flurbington (surname)', 'Qwxzy']."
    assert wiki.params[1]["list"] == "search" and wiki.params[1]["srsearch"] == "Qwxzy flurbington"
    assert wiki.params[1]["srlimit"] == "5"


def test_disambiguation_page_lists_its_options():
    obs = WikiSession(live(FakeMediaWiki())).search("Mercury")
    assert obs == (
        "Mercury may refer to: ['Mercury (planet)', 'Mercury (element)', 'Mercury (mythology)', 'Mercury Records']. "
        "Search one of these titles."
    )


def test_empty_page_is_an_observation():
    assert WikiSession(live(FakeMediaWiki())).search("Empty stub") == (
        "The page Empty stub is empty. Search for something else."
    )


# ---------------------------------------------------------------- faults are observations
def test_transient_5xx_is_retried():
    wiki = FakeMediaWiki(faults=[httpx.Response(503, text="Service Unavailable"), httpx.Response(502)])
    obs = WikiSession(live(wiki, max_retries=2)).search("Marie Curie")
    assert obs.startswith("Maria Salomea")
    assert len(wiki.requests) == 3


@pytest.mark.parametrize(
    "fault, observation",
    [
        (httpx.Response(500, text="<html>Internal error</html>"), "Wikipedia returned an error (HTTP 500)."),
        (httpx.Response(429), "Wikipedia is rate-limiting requests (HTTP 429). Try again later."),
        (httpx.ReadTimeout("read timed out"), "Wikipedia did not answer in time (timeout). Try again later."),
        (httpx.ConnectError("connection refused"), "Could not connect to Wikipedia."),
    ],
)
def test_persistent_faults_become_observations_after_retries(fault, observation):
    wiki = FakeMediaWiki(faults=[fault] * 3)
    obs = WikiSession(live(wiki, max_retries=2)).search("Marie Curie")
    assert obs == f"Search[Marie Curie] failed: {observation}"
    assert len(wiki.requests) == 3  # one try and two retries


@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(200, text='{"batchcomplete": "", "query": {"pages": '),  # cut-off JSON
        httpx.Response(200, text="<!DOCTYPE html><html>maintenance</html>"),
        httpx.Response(200, json=fixture("error_badvalue")),  # valid JSON, no "query"
        httpx.Response(200, json={"query": {"pages": {"1": {"pageid": 1, "ns": 0, "title": "X"}}}}),  # no extract
        httpx.Response(200, json=["not", "an", "object"]),
    ],
)
def test_malformed_responses_become_observations(fault):
    wiki = FakeMediaWiki(faults=[fault])
    obs = WikiSession(live(wiki)).search("Marie Curie")
    assert obs == "Search[Marie Curie] failed: Wikipedia sent a malformed response."
    assert len(wiki.requests) == 1  # not retried: the server did answer


def test_a_fault_does_not_break_the_session():
    wiki = FakeMediaWiki(faults=[httpx.ReadTimeout("slow")] * 3)
    session = WikiSession(live(wiki))
    assert "timeout" in session.search("Marie Curie")
    assert session.search("Marie Curie").startswith("Maria Salomea")  # the next call works again


def test_similar_search_fault_is_an_observation():
    wiki = FakeMediaWiki()

    def handler(request):  # the page request answers "missing"; the search request then fails
        if request.url.params.get("list") == "search":
            return httpx.Response(504)
        return wiki(request)

    session = WikiSession(live(handler, max_retries=0))
    assert session.search("Qwxzy flurbington") == (
        "Search[Qwxzy flurbington] failed: Wikipedia returned an error (HTTP 504)."
    )


# ---------------------------------------------------------------- the on-disk cache
def test_cache_makes_reruns_repeatable_without_the_network(tmp_path):
    wiki = FakeMediaWiki()
    first = WikiSession(live(wiki, tmp_path))
    found = first.search("Marie Curie")
    missing = first.search("Qwxzy flurbington")
    assert len(wiki.requests) == 2 + 1  # page, missing page, search

    def offline(request):
        raise AssertionError(f"unexpected request {request.url}")

    again = WikiSession(live(offline, tmp_path))
    assert again.search("Marie Curie") == found
    assert again.search("Qwxzy flurbington") == missing
    assert again.search("qwxzy  FLURBINGTON").endswith(missing.split(".", 1)[1])  # same normalized cache key
    assert again.lookup("x").startswith("There is no current page")


def test_faults_are_not_cached(tmp_path):
    wiki = FakeMediaWiki(faults=[httpx.Response(500)])
    session = WikiSession(live(wiki, tmp_path, max_retries=0))
    assert "HTTP 500" in session.search("Marie Curie")
    assert session.search("Marie Curie").startswith("Maria Salomea")


def test_damaged_cache_entry_is_refetched(tmp_path):
    wiki = FakeMediaWiki()
    backend = live(wiki, tmp_path)
    backend.page("Marie Curie")
    for f in (tmp_path / "cache").rglob("*.json"):
        f.write_text("{broken", encoding="utf-8")
    assert backend.page("Marie Curie").title == "Marie Curie"
    assert len(wiki.requests) == 2


def test_no_cache_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backend = live(FakeMediaWiki())
    assert backend.cache_dir is None
    backend.page("Marie Curie")
    assert list(tmp_path.iterdir()) == []


def test_make_backend_live_uses_the_user_cache_dir():
    backend = make_backend("live")
    assert isinstance(backend, LiveWikipedia)
    assert backend.cache_dir is not None and backend.cache_dir.parts[-2:] == ("wikipedia", "en")
