"""Common English given names and their nicknames, for first-name comparison.

Each entry maps a formal name to the short forms people use for it. ``name_groups``
gives the formal names a first name stands for, so that "Bill", "Will" and
"William" compare equal; a nickname shared by several formal names (Al, Alex,
Chris, Pat, ...) belongs to each of them without tying those names together.
"""

from __future__ import annotations

from functools import lru_cache

# formal name -> nicknames (all lower case, letters only)
NICKNAMES: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "gail"),
    "albert": ("bert", "al"),
    "alexander": ("alex", "xander", "sandy"),
    "alexandra": ("alex", "sandra", "lexi"),
    "alfred": ("alf", "fred", "al"),
    "amanda": ("mandy",),
    "andrew": ("andy", "drew"),
    "angela": ("angie",),
    "anthony": ("tony",),
    "arthur": ("art",),
    "ashley": ("ash",),
    "barbara": ("barb", "babs"),
    "benjamin": ("ben", "benny", "benji"),
    "bradley": ("brad",),
    "caroline": ("carrie", "carol"),
    "catherine": ("cathy", "cath", "kate", "katie", "cat"),
    "charles": ("charlie", "chuck", "chas"),
    "christina": ("chris", "tina", "chrissy"),
    "christine": ("chris", "chrissy", "tina"),
    "christopher": ("chris", "kit", "topher"),
    "cynthia": ("cindy",),
    "daniel": ("dan", "danny"),
    "david": ("dave", "davey"),
    "deborah": ("debbie", "deb", "debra"),
    "dmitri": ("dima",),
    "donald": ("don", "donny"),
    "dorothy": ("dot", "dottie", "dolly"),
    "douglas": ("doug",),
    "edward": ("ed", "eddie", "ted", "ned"),
    "elizabeth": ("liz", "lizzie", "beth", "betty", "eliza", "libby", "betsy"),
    "emily": ("em", "emmy"),
    "eugene": ("gene",),
    "francis": ("frank", "fran"),
    "franklin": ("frank",),
    "frederick": ("fred", "freddie", "rick"),
    "gabriel": ("gabe",),
    "gerald": ("gerry", "jerry"),
    "gregory": ("greg",),
    "harold": ("harry", "hal"),
    "henry": ("hank", "harry"),
    "jacob": ("jake",),
    "jacqueline": ("jackie",),
    "james": ("jim", "jimmy", "jamie"),
    "jeffrey": ("jeff",),
    "jennifer": ("jen", "jenny"),
    "jeremy": ("jerry",),
    "jessica": ("jess", "jessie"),
    "john": ("jack", "johnny"),
    "jonathan": ("jon", "jonny"),
    "joseph": ("joe", "joey"),
    "joshua": ("josh",),
    "julia": ("julie", "jules"),
    "katherine": ("kathy", "kate", "katie", "kat", "kay", "kitty"),
    "kathleen": ("kathy", "kate", "katie", "kay"),
    "kenneth": ("ken", "kenny"),
    "kimberly": ("kim",),
    "laura": ("laurie",),
    "lauren": ("laurie",),
    "lawrence": ("larry",),
    "leonard": ("leo", "len", "lenny"),
    "louis": ("lou",),
    "margaret": ("peggy", "maggie", "meg", "marge", "madge", "greta"),
    "mary": ("molly", "polly", "mae"),
    "matthew": ("matt", "matty"),
    "melissa": ("mel", "missy"),
    "michael": ("mike", "mikey", "mick"),
    "michelle": ("shelly", "shelley", "chelle"),
    "nancy": ("nan",),
    "natalie": ("nat", "tally"),
    "nathaniel": ("nate", "nat", "nathan"),
    "nicholas": ("nick", "nicky"),
    "nicole": ("nikki", "nicky"),
    "pamela": ("pam",),
    "patricia": ("pat", "patty", "trish", "tricia"),
    "patrick": ("pat", "paddy"),
    "peter": ("pete",),
    "philip": ("phil",),
    "phillip": ("phil",),
    "raphael": ("rafa",),
    "raymond": ("ray",),
    "rebecca": ("becky", "becca"),
    "richard": ("rick", "ricky", "dick", "rich", "richie"),
    "robert": ("bob", "bobby", "rob", "robbie", "bert"),
    "roberta": ("bobbie", "robbie"),
    "ronald": ("ron", "ronnie"),
    "samantha": ("sam", "sammy"),
    "samuel": ("sam", "sammy"),
    "sandra": ("sandy",),
    "sarah": ("sally", "sadie"),
    "stephanie": ("steph",),
    "stephen": ("steve", "stevie"),
    "steven": ("steve", "stevie"),
    "susan": ("sue", "susie"),
    "terence": ("terry",),
    "theodore": ("ted", "teddy", "theo"),
    "thomas": ("tom", "tommy"),
    "timothy": ("tim", "timmy"),
    "valerie": ("val",),
    "victoria": ("vicky", "tori"),
    "vincent": ("vince", "vinny"),
    "walter": ("walt", "wally"),
    "william": ("bill", "billy", "will", "willy", "liam"),
    "zachary": ("zach", "zack"),
}


@lru_cache(maxsize=1)
def _index() -> dict[str, tuple[str, ...]]:
    groups: dict[str, set[str]] = {}
    for formal, nicks in NICKNAMES.items():
        groups.setdefault(formal, set()).add(formal)
        for n in nicks:
            groups.setdefault(n, set()).add(formal)
    return {name: tuple(sorted(g)) for name, g in groups.items()}


def name_groups(name: str) -> tuple[str, ...]:
    """The formal names ``name`` stands for (lower case, sorted), or ``(name,)``.

    Two first names are nickname-equivalent when their groups intersect: "kate"
    and "katherine" share "katherine"; "pat" belongs to patricia and patrick.
    """
    return _index().get(name, (name,))


def canonical(name: str) -> str:
    """One formal name for ``name`` (the first of its groups): a blocking key."""
    return name_groups(name)[0]
