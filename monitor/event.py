"""Reading the event of an article: who acts, whether an action is the story's subject or background, and whether the
story is about adopting the technology rather than restricting it. English cues, the same for every topic, written in
the phrase language of monitor/phrases.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.phrases import PhraseIndex, compile_entry, lower_same_length

# A clause cue: an action after it, up to the end of its clause, is background ("despite the ban", "which has been
# under US sanctions since 2019", "moved past the bans").
CLAUSE_CUES = [
    "despite", "in spite of", "amid", "notwithstanding", "even as",
    "which {has|have|had|was|were|is|are} {|been |also |long }{|under|hit|placed|put|added|subject|targeted|banned|sanctioned|blacklisted|barred}",
    "whose {products|equipment|cameras|gear|devices|drones|phones|chips} {were|was|have been|had been|are}",
    "{move|moves|moved|moving} past", "{weather|weathers|weathered|survive|survives|survived|shrug*} off",
    "{weather|weathered|survived|outlasted|overcame}", "{hit|hurt|hobbled|crippled|battered} by",
    "{nearly |almost |}{put|driven} out of business by", "since {the|a|its|US|U.S.|Washington's|American} ... {ban|bans|sanctions|blacklisting|listing}",
    "after years of", "{under|facing|subject to} {|US |U.S. |American |Western |EU |international |heavy |tough }{sanctions|restrictions|export controls}",
    "{sanctions|ban|blacklist*} exposure", "{impact|effect|effects|toll|shadow} of {|the |US |U.S. |American |western }{sanctions|ban|bans|restrictions|blacklisting}",
    "{long|once|previously|already|formerly} {banned|sanctioned|blacklisted|barred|restricted}",
]
# An attributive cue: the action word itself is background ("US-sanctioned Huawei", "blacklisted Hikvision").
ATTRIBUTIVE_CUES = [
    "{US|U.S.|American|Western|EU|Washington}-{sanctioned|blacklisted|banned|restricted|listed|designated}",
    "{sanction-hit|sanctions-hit|sanction-struck|embattled|blacklisted|sanctioned|banned} {Chinese|company|firm|vendor|maker|giant|group|supplier|telecom*|tech*}",
    "{sanction-hit|sanctions-hit}",
]
# Vendors named only to compare ("like Huawei and ZTE before") are mentioned, not acted on.
COMPARISON_CUES = ["like", "as with", "as it did with", "similar to", "unlike", "just as", "as happened with", "in the footsteps of"]
# The story adopts or uses the technology: buying, installing, deploying, partnering, launching, shipping.
ADOPTION = [
    "install{|s|ed|ing}", "deploy*", "roll{|s|ed|ing} out", "adopt{|s|ed|ing}", "expand{|s|ed|ing}", "extend{|s|ed|ing}",
    "{sign|signs|signed|signing|award|awards|awarded|win|wins|won} ... {contract|contracts|deal|deals|agreement|agreements|order|orders}",
    "{buy|buys|bought|purchased}",
    "partner{|s|ed|ing|ship}", "launch{|es|ed|ing}", "unveil*", "ship{|s|ped|ping}", "revenue", "profit", "shares",
    "earnings", "quarter{|ly}", "orders", "market share", "demand for", "use{|s|d} {|the |its |their }{drone*|camera*|system*}",
    "help{|s|ed} {|to }{find|search|map|locate|rescue|monitor}", "safe city", "smart city",
]
# China as the subject of a sentence, acting (against foreign firms: the other direction).
CHINA = ["China", "Beijing", "Chinese {authorities|government|regulator|regulators|military|officials|ministry|commerce ministry|cyberspace regulator|agencies|central government agencies|state firms}",
         "China's {regulator|cyberspace regulator|military|commerce ministry|government|authorities|market regulator|ministry of commerce}"]
ACTORS = {
    "government": ["government", "ministry", "minister", "cabinet", "administration", "department", "president",
                   "prime minister", "governor", "mayor", "state agencies", "federal agencies", "agencies", "executive order"],
    "regulator": ["regulator", "commission", "authority", "watchdog", "FCC", "Ofcom", "data protection", "security agency",
                  "cyber security agency", "cybersecurity agency", "security service"],
    "parliament": ["parliament", "lawmakers", "legislators", "MPs", "MEPs", "senator*", "congress*", "legislature",
                   "committee", "peers", "deputies", "bill", "amendment"],
    "court": ["court", "judge", "judges", "tribunal"],
    "council": ["council", "councillor*", "councilor*", "municipalit*", "city hall", "county", "borough"],
    "institution": ["university", "universities", "hospital*", "school*", "police", "army", "armed forces", "military",
                    "defence", "defense", "navy", "air force", "library", "trust", "port", "border guard", "coast guard"],
    "company": ["operator*", "carrier*", "retailer*", "company", "companies", "firm", "firms", "bank*", "airline*"],
}
CHINA_GAP_WORDS = 4
NOT_A_SUBJECT = re.compile(r"\b(?:in|from|of|to|with|by|on|against|at|and|for|into|over)\s+$", re.IGNORECASE)
RESTRICTING = frozenset({"ban", "removal", "blacklist", "sanction", "procurement_restriction", "investigation", "call_for_ban"})
CLAUSE_END = re.compile(r"[,;:.!?\n()]|\s[-\u2013\u2014]\s")


@dataclass(frozen=True)
class Cues:
    """Where in a document the event cues are: background spans, comparison spans, adoption words, actor words."""

    background: list[tuple[int, int]]
    comparison: list[tuple[int, int]]
    adoption: list[tuple[int, int]]
    actors: list[tuple[int, int, str]]
    china: list[tuple[int, int]]

    def in_background(self, start: int) -> bool:
        return any(low <= start < high for low, high in self.background)

    def compared(self, start: int) -> bool:
        return any(low <= start < high for low, high in self.comparison)

    def adoption_between(self, start: int, end: int) -> int:
        return sum(start <= low < end for low, _ in self.adoption)

    def actor_kinds_between(self, start: int, end: int) -> list[str]:
        return list(dict.fromkeys(kind for low, _, kind in self.actors if start <= low < end))

    def china_acts_at(self, document: str, sentence_start: int, action_start: int) -> bool:
        """Whether China is the subject just before an action: "China bars Micron", "Beijing to sanction..."."""
        return any(
            sentence_start <= low and high <= action_start
            and len(document[high:action_start].split()) <= CHINA_GAP_WORDS
            and not NOT_A_SUBJECT.search(document[sentence_start:low])
            for low, high in self.china
        )


class EventReader:
    """Finds the event cues of a document; compiled once."""

    def __init__(self) -> None:
        entries = [("clause", None, CLAUSE_CUES), ("attributive", None, ATTRIBUTIVE_CUES),
                   ("comparison", None, COMPARISON_CUES), ("adoption", None, ADOPTION), ("china", None, CHINA)]
        entries += [("actor", kind, words) for kind, words in ACTORS.items()]
        self.index = PhraseIndex(
            [phrase for category, key, words in entries for word in words for phrase in compile_entry(category, key or category, word)]
        )

    def cues(self, document: str) -> Cues:
        lowered = lower_same_length(document)
        background, comparison, adoption, actors, china = [], [], [], [], []
        for start, end, phrase in self.index.find(lowered, document):
            if phrase.category == "clause":
                background.append((start, _clause_end(document, end)))
            elif phrase.category == "attributive":
                background.append((start, end))
            elif phrase.category == "comparison":
                comparison.append((start, _clause_end(document, end)))
            elif phrase.category == "adoption":
                adoption.append((start, end))
            elif phrase.category == "china":
                china.append((start, end))
            else:
                actors.append((start, end, phrase.key))
        return Cues(background, comparison, adoption, actors, china)


def _clause_end(document: str, position: int) -> int:
    found = CLAUSE_END.search(document, position)
    return found.start() if found else len(document)
