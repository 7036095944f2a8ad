"""The tagger: vendors folded to parents, acting countries, actions, evidence and features, and its speed."""

from __future__ import annotations

import json

import pytest

from monitor.config import load_config
from monitor.domain import TopicSpec
from monitor.tags import Tagger

from .conftest import ROOT


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(load_config(ROOT / "feeds.yaml").topics[0])


def small_tagger(**vocabulary) -> Tagger:
    return Tagger(TopicSpec(name="t", description="d", **vocabulary))


def test_brands_and_subsidiaries_fold_to_the_parent(tagger):
    tags = tagger.tag(
        "Retailers pull EZVIZ and Lorex cameras after FCC ban",
        "Two national retailers removed EZVIZ and Lorex home cameras from their shelves after the FCC ruling.",
    )
    assert set(tags.vendors) == {"Hikvision", "Dahua"}
    assert {"EZVIZ", "Lorex"} <= set(tags.evidence["vendors"])


def test_chinese_made_equipment_does_not_make_china_an_actor(tagger):
    tags = tagger.tag(
        "Australia bans Chinese-made drones from defence sites",
        "The Australian government has banned drones made in China from all defence sites. "
        "Officials said Chinese companies could be compelled to hand data to intelligence services in China.",
    )
    assert tags.countries == ["AU"]
    assert "Chinese-made drones" in tags.evidence["subjects"]


def test_a_uk_ban_mentioning_china_gives_gb_only(tagger):
    tags = tagger.tag(
        "UK bans Hikvision cameras from sensitive government sites",
        "Britain has banned Hikvision cameras from sensitive sites, citing China's National Intelligence Law. "
        "Ministers said equipment from Chinese firms posed a risk. Hikvision is partly owned by the Chinese state.",
    )
    assert tags.countries == ["GB"]
    assert tags.vendors == ["Hikvision"]


def test_china_reacting_is_an_actor(tagger):
    tags = tagger.tag(
        "Beijing condemns Canada's order against Hikvision",
        "China's foreign ministry said it firmly opposes the decision and would take necessary measures.",
    )
    assert tags.countries[0] == "CN"
    assert "reaction" in tags.actions


def test_countries_joined_by_and_act_together(tagger):
    tags = tagger.tag("US and UK ban Hikvision cameras", "The United States and Britain banned the cameras on Monday.")
    assert set(tags.countries) == {"US", "GB"}


def test_a_passing_mention_of_another_vendor_is_not_tagged(tagger):
    tags = tagger.tag(
        "Council to remove Hikvision cameras from schools",
        "The council will remove Hikvision cameras from its schools. Hikvision said its products are secure.\n\n"
        "The council has spent heavily on CCTV over the past decade. Its libraries were refurbished last year. "
        "Elsewhere, the government said in 2020 it would ban Huawei from 5G networks.",
    )
    assert tags.vendors == ["Hikvision"]


@pytest.mark.parametrize(
    ("sentence", "action"),
    [
        ("The ministry banned Hikvision cameras.", "ban"),
        ("Agencies are barring Dahua cameras.", "ban"),
        ("Agencies must rip out Hikvision cameras within a year.", "removal"),
        ("Councils are phasing out Dahua equipment.", "removal"),
        ("Commerce added Hikvision to the Entity List.", "blacklist"),
        ("Treasury sanctioned DJI on Monday.", "sanction"),
        ("Departments will stop buying Hikvision cameras.", "procurement_restriction"),
        ("Lawmakers called for a ban on Dahua cameras.", "call_for_ban"),
        ("MPs urged the government to prohibit Hikvision cameras.", "call_for_ban"),
        ("The regulator launched a probe into DJI drones.", "investigation"),
        ("A court overturned the ban on Hikvision cameras.", "reversal"),
        ("Hikvision said it firmly opposes the decision.", "reaction"),
    ],
)
def test_actions_are_found_in_their_inflections(tagger, sentence, action):
    assert action in tagger.tag("", sentence).actions


def test_evidence_holds_the_phrases_as_written(tagger):
    tags = tagger.tag(
        "Britain Orders Removal Of Chinese-Made CCTV",
        "The U.S. Commerce Department said Hikvision was banned. British officials ordered the removal.",
    )
    assert "Chinese-Made CCTV" in tags.evidence["subjects"]
    assert "Removal" in tags.evidence["actions"]
    assert "Britain" in tags.evidence["countries"]
    assert set(tags.evidence) == {"vendors", "countries", "actions", "subjects"}


def test_features_are_in_the_unit_interval_and_tell_stories_apart(tagger):
    relevant = tagger.tag(
        "FCC bans new Hikvision and Dahua equipment",
        "The FCC has banned authorisations of new Hikvision and Dahua cameras, citing national security.",
    )
    launch = tagger.tag("Hikvision launches colour cameras", "Hikvision showed a new range of cameras at a trade fair.")
    for tags in (relevant, launch):
        assert all(0.0 <= value <= 1.0 for value in tags.features.values())
        assert list(tags.features) == tagger.feature_names
    assert relevant.features["cooccur_in_title"] == 1.0 and launch.features["cooccur"] == 0.0
    assert relevant.features["vendor_in_title"] == launch.features["vendor_in_title"] == 1.0
    assert relevant.features["action_ban"] == 1.0 and launch.features["action_ban"] == 0.0


def test_site_furniture_counts_for_nothing(tagger):
    tags = tagger.tag(
        "Heatwave warning issued for the weekend",
        "Temperatures are expected to reach 35C across the south on Saturday, forecasters said.\n"
        "Read more: UK bans Hikvision cameras at government sites\n"
        "Related\n- Lawmakers urge federal ban on Hikvision and Dahua cameras\n",
    )
    assert (tags.vendors, tags.countries, tags.actions) == ([], [], [])
    assert tags.features["furniture_share"] == 1.0


def test_empty_article(tagger):
    tags = tagger.tag("", "")
    assert (tags.vendors, tags.countries, tags.actions) == ([], [], [])
    assert all(phrases == [] for phrases in tags.evidence.values())
    assert all(value == 0.0 for value in tags.features.values())


def test_case_rules_and_exceptions_of_the_phrase_language():
    tagger = small_tagger(
        countries={"US": ["US", "American", "!North American"], "PL": ["Polish"]},
        actions={"ban": ["ban{|s|ned|ning}"], "call_for_ban": ["call{|s|ed|ing} for ... ban"]},
        subjects=["Chinese-made {camera*|drone*}"],
    )
    quiet = tagger.tag("", "Let us polish the North American unit's firmware and ban nothing.")
    assert quiet.countries == []
    loud = tagger.tag("US bans Chinese made cameras", "The ban covers all federal sites.")
    assert loud.countries == ["US"]
    assert loud.evidence["subjects"] == ["Chinese made cameras"]
    call = tagger.tag("", "Polish MPs called for a national ban on the cameras.")
    assert (call.countries, call.actions) == (["PL"], ["call_for_ban"])


def test_a_malformed_vocabulary_entry_is_refused():
    with pytest.raises(ValueError, match="never closed"):
        small_tagger(actions={"ban": ["ban{|s"]})


def test_vendor_sets_match_the_labelled_items(tagger):
    lines = (ROOT / "eval" / "topic_labelled.jsonl").open(encoding="utf-8")
    items = [item for item in map(json.loads, lines) if item["relevant"]]
    exact = sum(set(tagger.tag(i["title"], i["text"]).vendors) == set(i["vendors"]) for i in items)
    assert exact / len(items) >= 0.85


def test_sanctions_named_in_passing_are_background_not_the_event(tagger):
    tags = tagger.tag(
        "US-sanctioned Huawei posts record smartphone shipments",
        "Huawei, which has been under US sanctions since 2019, shipped more phones than ever, "
        "as its own chips helped it move past the bans that once crippled its handset business.",
    )
    assert tags.actions == [] and tags.event["role"] == "background"
    assert tags.features["action_in_background"] == 1.0 and tags.features["event_in_title"] == 0.0


def test_the_event_names_actor_action_target_and_role(tagger):
    tags = tagger.tag(
        "Lithuania's government bans Hikvision cameras in state institutions",
        "The government backed the ban on Wednesday, citing security.",
    )
    assert tags.event == {"actor": "LT", "actor_kind": "government", "action": "bans", "target": "Hikvision", "role": "subject"}


def test_vendors_named_once_in_the_body_are_found_and_comparisons_only_mentioned(tagger):
    tags = tagger.tag(
        "Ministry of Defence will change cameras on military objects",
        "The ministry said surveillance cameras on military objects will be changed until the end of the year. "
        "The decision follows a control by the military inspection in spring. "
        "Like Huawei and ZTE before, the suppliers are seen as a risk by counterintelligence.\n\n"
        "In total it is about several hundred units of Hikvision and Dahua, said the spokesman.",
    )
    assert tags.vendors == ["Hikvision", "Dahua"] and tags.mentioned_vendors == ["Huawei", "ZTE"]


@pytest.mark.parametrize(
    "title, text, not_action",
    [
        ("Hikvision profit rises", "Demand for cameras recovered in China, lifting profit.", "call_for_ban"),
        ("FBI removes Chinese malware from routers", "The operation removed malware planted by hackers.", "removal"),
        ("Police use drones for accident investigations", "Officers use drones for inspections of roofs.", "investigation"),
    ],
)
def test_words_that_only_look_like_actions(tagger, title, text, not_action):
    assert not_action not in tagger.tag(title, text).actions


def test_mandatory_security_certification_is_a_procurement_restriction(tagger):
    tags = tagger.tag(
        "India makes security testing compulsory for CCTV cameras bought by government",
        "Every camera must be certified by an accredited laboratory before a ministry may buy it.",
    )
    assert tags.actions[:1] == ["procurement_restriction"]


@pytest.mark.parametrize(
    "title, china_restricts",
    [
        ("China bars Micron chips from critical infrastructure", 1.0),
        ("Beijing to sanction US drone makers over Taiwan arms sales", 1.0),
        ("Cameras made in China removed from army bases", 0.0),
        ("Beijing condemns Canada's ban on Hikvision", 0.0),
    ],
)
def test_china_acting_against_foreign_firms_is_read_as_the_other_direction(tagger, title, china_restricts):
    assert tagger.tag(title, "").features["china_restricts"] == china_restricts
