"""Static ingredients of the synthetic world: names, places, specialties, texts.

Everything here is plain data. Behavioural parameters (segments, channel and
content preferences, fatigue) live in :mod:`hcpjourney.simulate.response`.
"""

from __future__ import annotations

PRODUCT = "cardiozen"
COMPETITOR = "vasotrex"
THERAPEUTIC_AREA = "cardiology"

# Sources of hcps.csv records, in the order a person's records are listed.
SOURCES: tuple[str, ...] = ("crm", "open_payments", "events", "web", "survey")
RECORD_PREFIX = {
    "crm": "crm",
    "open_payments": "op",
    "events": "evt",
    "web": "web",
    "survey": "svy",
}

# (profession, share, credentials with weights)
PROFESSION_MIX: tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...] = (
    ("physician", 0.78, (("MD", 0.88), ("DO", 0.12))),
    ("nurse_practitioner", 0.08, (("NP", 0.7), ("APRN", 0.3))),
    ("physician_assistant", 0.05, (("PA-C", 0.75), ("PA", 0.25))),
    ("pharmacist", 0.05, (("PharmD", 0.85), ("RPh", 0.15))),
    ("nurse", 0.04, (("RN", 0.8), ("BSN", 0.2))),
)
PRESCRIBERS = frozenset({"physician", "nurse_practitioner", "physician_assistant"})

# specialty mix per profession
SPECIALTY_MIX: dict[str, tuple[tuple[str, float], ...]] = {
    "physician": (
        ("Cardiology", 0.38),
        ("Interventional Cardiology", 0.04),
        ("Electrophysiology", 0.02),
        ("Internal Medicine", 0.22),
        ("Family Medicine", 0.18),
        ("Endocrinology", 0.07),
        ("Nephrology", 0.06),
        ("Geriatric Medicine", 0.03),
    ),
    "nurse_practitioner": (
        ("Cardiology", 0.4), ("Family Medicine", 0.4), ("Internal Medicine", 0.2),
    ),
    "physician_assistant": (
        ("Cardiology", 0.45), ("Family Medicine", 0.35), ("Internal Medicine", 0.2),
    ),
    "pharmacist": (("Clinical Pharmacy", 0.7), ("Cardiology", 0.3)),
    "nurse": (("Cardiology", 0.7), ("Internal Medicine", 0.3)),
}
CARDIO_SPECIALTIES = frozenset({"Cardiology", "Interventional Cardiology", "Electrophysiology"})

# Open Payments spells specialties as a provider taxonomy path.
OPEN_PAYMENTS_SPECIALTY = {
    "Cardiology": "Allopathic & Osteopathic Physicians|Internal Medicine|Cardiovascular Disease",
    "Interventional Cardiology": (
        "Allopathic & Osteopathic Physicians|Internal Medicine|Interventional Cardiology"
    ),
    "Electrophysiology": (
        "Allopathic & Osteopathic Physicians|Internal Medicine|"
        "Clinical Cardiac Electrophysiology"
    ),
    "Internal Medicine": "Allopathic & Osteopathic Physicians|Internal Medicine",
    "Family Medicine": "Allopathic & Osteopathic Physicians|Family Medicine",
    "Endocrinology": (
        "Allopathic & Osteopathic Physicians|Internal Medicine|"
        "Endocrinology, Diabetes & Metabolism"
    ),
    "Nephrology": "Allopathic & Osteopathic Physicians|Internal Medicine|Nephrology",
    "Geriatric Medicine": "Allopathic & Osteopathic Physicians|Internal Medicine|Geriatric Medicine",
}

# (state, state name, city, zip3, UTC offset in hours (standard time), weight)
CITIES: tuple[tuple[str, str, str, str, int, float], ...] = (
    ("NY", "New York", "New York", "100", -5, 9.0),
    ("NY", "New York", "Rochester", "146", -5, 1.0),
    ("NY", "New York", "Buffalo", "142", -5, 1.0),
    ("MA", "Massachusetts", "Boston", "021", -5, 4.0),
    ("PA", "Pennsylvania", "Philadelphia", "191", -5, 4.0),
    ("PA", "Pennsylvania", "Pittsburgh", "152", -5, 2.0),
    ("NJ", "New Jersey", "Newark", "071", -5, 2.0),
    ("MD", "Maryland", "Baltimore", "212", -5, 2.5),
    ("VA", "Virginia", "Richmond", "232", -5, 1.5),
    ("NC", "North Carolina", "Charlotte", "282", -5, 2.0),
    ("NC", "North Carolina", "Durham", "277", -5, 1.5),
    ("GA", "Georgia", "Atlanta", "303", -5, 3.5),
    ("FL", "Florida", "Miami", "331", -5, 3.5),
    ("FL", "Florida", "Tampa", "336", -5, 2.0),
    ("FL", "Florida", "Orlando", "328", -5, 2.0),
    ("FL", "Florida", "Jacksonville", "322", -5, 1.5),
    ("OH", "Ohio", "Cleveland", "441", -5, 2.5),
    ("OH", "Ohio", "Columbus", "432", -5, 2.0),
    ("MI", "Michigan", "Detroit", "482", -5, 2.5),
    ("MI", "Michigan", "Ann Arbor", "481", -5, 1.0),
    ("IN", "Indiana", "Indianapolis", "462", -5, 1.5),
    ("KY", "Kentucky", "Louisville", "402", -5, 1.0),
    ("TN", "Tennessee", "Nashville", "372", -6, 2.0),
    ("TN", "Tennessee", "Memphis", "381", -6, 1.0),
    ("IL", "Illinois", "Chicago", "606", -6, 5.0),
    ("WI", "Wisconsin", "Milwaukee", "532", -6, 1.5),
    ("MN", "Minnesota", "Minneapolis", "554", -6, 2.0),
    ("MN", "Minnesota", "Rochester", "559", -6, 1.0),
    ("MO", "Missouri", "St. Louis", "631", -6, 2.0),
    ("MO", "Missouri", "Kansas City", "641", -6, 1.5),
    ("TX", "Texas", "Houston", "770", -6, 5.0),
    ("TX", "Texas", "Dallas", "752", -6, 4.0),
    ("TX", "Texas", "San Antonio", "782", -6, 2.0),
    ("TX", "Texas", "Austin", "787", -6, 1.5),
    ("LA", "Louisiana", "New Orleans", "701", -6, 1.5),
    ("AL", "Alabama", "Birmingham", "352", -6, 1.2),
    ("OK", "Oklahoma", "Oklahoma City", "731", -6, 1.0),
    ("CO", "Colorado", "Denver", "802", -7, 2.0),
    ("UT", "Utah", "Salt Lake City", "841", -7, 1.0),
    ("AZ", "Arizona", "Phoenix", "850", -7, 2.5),
    ("NM", "New Mexico", "Albuquerque", "871", -7, 0.8),
    ("CA", "California", "Los Angeles", "900", -8, 7.0),
    ("CA", "California", "San Francisco", "941", -8, 3.0),
    ("CA", "California", "San Diego", "921", -8, 2.5),
    ("CA", "California", "Sacramento", "958", -8, 1.2),
    ("WA", "Washington", "Seattle", "981", -8, 2.5),
    ("OR", "Oregon", "Portland", "972", -8, 1.5),
    ("NV", "Nevada", "Las Vegas", "891", -8, 1.2),
)

STREETS: tuple[str, ...] = (
    "Main St", "Oak Ave", "Medical Center Dr", "Park Ave", "University Blvd", "Elm St",
    "Washington St", "Lakeview Dr", "Hospital Way", "Maple Ave", "Broadway", "Pine St",
    "Health Sciences Dr", "Jefferson Ave", "Riverside Dr", "Cedar Ln", "Market St",
    "Lincoln Ave", "Highland Ave", "Center St",
)
ORG_PATTERNS: tuple[str, ...] = (
    "{city} Heart Institute",
    "{city} General Hospital",
    "St. {saint} Medical Center",
    "University of {state_name} Medical Center",
    "{surname} Cardiology Associates",
    "{city} Family Medicine Group",
    "{city} Regional Health System",
    "{city} Kidney & Hypertension Center",
    "{surname} Internal Medicine PLLC",
    "{city} Cardiovascular Clinic",
    "Mercy Hospital {city}",
    "{surname} & {surname2} Primary Care",
    "{city} Endocrine & Diabetes Center",
    "{city} Veterans Affairs Medical Center",
)
SAINTS: tuple[str, ...] = (
    "Mary's", "Joseph's", "Luke's", "Vincent's", "Francis", "Elizabeth's", "John's",
    "Anthony's", "Catherine's", "Jude",
)

FEMALE_FIRST: tuple[str, ...] = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
    "Sarah", "Karen", "Lisa", "Nancy", "Margaret", "Sandra", "Ashley", "Kimberly", "Emily",
    "Donna", "Michelle", "Carol", "Amanda", "Melissa", "Deborah", "Stephanie", "Rebecca",
    "Laura", "Cynthia", "Kathleen", "Amy", "Angela", "Katherine", "Christine", "Samantha",
    "Victoria", "Alexandra", "Abigail", "Jacqueline", "Pamela", "Valerie", "Catherine",
    "Priya", "Mei", "Ana", "Sofia", "Fatima", "Aisha", "Olga", "Yuki", "Grace", "Hannah",
    "Rachel", "Julia", "Natalie", "Megan", "Lauren", "Nicole", "Maria", "Rosa", "Leah",
    "Dorothy",
)
MALE_FIRST: tuple[str, ...] = (
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Christopher", "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Steven", "Andrew",
    "Joshua", "Kenneth", "Kevin", "Brian", "Timothy", "Ronald", "Jason", "Edward", "Jeffrey",
    "Ryan", "Jacob", "Gregory", "Nicholas", "Jonathan", "Benjamin", "Samuel", "Alexander",
    "Lawrence", "Douglas", "Peter", "Frederick", "Raymond", "Gerald", "Theodore", "Zachary",
    "Nathaniel", "Philip", "Eugene", "Leonard", "Donald", "Rajesh", "Wei", "Carlos", "Jose",
    "Ahmed", "Omar", "Hiroshi", "Dmitri", "Luis", "Kwame", "Arjun", "Minh", "Paul",
)
MIDDLE_NAMES: tuple[str, ...] = (
    "Ann", "Marie", "Lynn", "Rose", "Jane", "Louise", "Grace", "Elaine", "Jean", "Kay",
    "Lee", "James", "Allen", "Edward", "Michael", "Joseph", "Wayne", "Scott", "Alan", "Ray",
    "Paul", "Thomas", "David", "John", "Dean",
)
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen",
    "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams",
    "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins",
    "Reyes", "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez",
    "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos",
    "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez", "Wood", "James",
    "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo",
    "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez", "Powell", "Jenkins",
    "Perry", "Russell", "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes",
    "Gonzales", "Fisher", "Vasquez", "Simmons", "Romero", "Jordan", "Patterson",
    "Alexander", "Hamilton", "Graham", "Reynolds", "Griffin", "Wallace", "Moreno", "West",
    "Cole", "Hayes", "Bryant", "Herrera", "Gibson", "Ellis", "Tran", "Medina", "Aguilar",
    "Stevens", "Murray", "Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez",
    "McDonald", "Woods", "Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen",
    "Freeman", "Webb", "Tucker", "Guzman", "Burns", "Crawford", "Olson", "Simpson",
    "Porter", "Hunter", "Gordon", "Mendez", "Silva", "Shaw", "Snyder", "Mason", "Dixon",
    "Munoz", "Hunt", "Hicks", "Holmes", "Palmer", "Wagner", "Black", "Robertson", "Boyd",
    "Rose", "Stone", "Salazar", "Fox", "Warren", "Mills", "Meyer", "Rice", "Schmidt",
    "Garza", "Daniels", "Ferguson", "Nichols", "Stephens", "Soto", "Weaver", "Ryan",
    "Gardner", "Payne", "Grant", "Dunn", "Kelley", "Spencer", "Hawkins", "O'Brien",
    "O'Connor", "McCarthy", "D'Angelo", "Garcia-Lopez", "Smith-Jones", "Van der Berg",
    "Shah", "Singh", "Gupta", "Kumar", "Wang", "Li", "Zhang", "Liu", "Yamamoto", "Tanaka",
    "Kowalski", "Novak", "Ivanov", "Rossi", "Russo", "Cohen", "Levy", "Friedman", "Okafor",
    "Mensah", "Haddad", "Nasser",
)

NICKNAMES: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Will", "Billy"),
    "Robert": ("Bob", "Rob", "Bobby"),
    "Richard": ("Rick", "Dick", "Rich"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "John": ("Jack", "Johnny"),
    "Michael": ("Mike", "Mick"),
    "Joseph": ("Joe", "Joey"),
    "Thomas": ("Tom", "Tommy"),
    "Christopher": ("Chris",),
    "Charles": ("Charlie", "Chuck"),
    "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",),
    "Anthony": ("Tony",),
    "Steven": ("Steve",),
    "Andrew": ("Andy", "Drew"),
    "Joshua": ("Josh",),
    "Kenneth": ("Ken", "Kenny"),
    "Timothy": ("Tim",),
    "Ronald": ("Ron",),
    "Edward": ("Ed", "Ted", "Eddie"),
    "Jeffrey": ("Jeff",),
    "Gregory": ("Greg",),
    "Nicholas": ("Nick",),
    "Jonathan": ("Jon",),
    "Benjamin": ("Ben",),
    "Samuel": ("Sam",),
    "Alexander": ("Alex",),
    "Lawrence": ("Larry",),
    "Douglas": ("Doug",),
    "Peter": ("Pete",),
    "Frederick": ("Fred",),
    "Raymond": ("Ray",),
    "Gerald": ("Jerry",),
    "Theodore": ("Ted", "Teddy"),
    "Zachary": ("Zach",),
    "Nathaniel": ("Nate", "Nat"),
    "Philip": ("Phil",),
    "Eugene": ("Gene",),
    "Leonard": ("Len", "Leo"),
    "Donald": ("Don",),
    "David": ("Dave",),
    "Elizabeth": ("Liz", "Beth", "Betsy", "Eliza"),
    "Katherine": ("Kate", "Katie", "Kathy"),
    "Catherine": ("Cathy", "Cate"),
    "Kathleen": ("Kathy", "Kate"),
    "Margaret": ("Peggy", "Maggie", "Meg"),
    "Patricia": ("Pat", "Trish", "Patty"),
    "Jennifer": ("Jen", "Jenny"),
    "Deborah": ("Debbie", "Deb"),
    "Susan": ("Sue", "Susie"),
    "Rebecca": ("Becky",),
    "Jessica": ("Jess",),
    "Victoria": ("Vicky", "Tori"),
    "Christine": ("Chris", "Tina"),
    "Kimberly": ("Kim",),
    "Stephanie": ("Steph",),
    "Alexandra": ("Alex", "Sasha"),
    "Abigail": ("Abby",),
    "Samantha": ("Sam",),
    "Jacqueline": ("Jackie",),
    "Pamela": ("Pam",),
    "Valerie": ("Val",),
    "Cynthia": ("Cindy",),
    "Sandra": ("Sandy",),
    "Dorothy": ("Dot", "Dottie"),
    "Barbara": ("Barb",),
    "Amanda": ("Mandy",),
    "Melissa": ("Missy",),
    "Michelle": ("Shelly",),
    "Natalie": ("Nat",),
}

PERSONAL_EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "aol.com",
)

# Content vocabulary
THEMES: tuple[str, ...] = (
    "efficacy", "safety", "access", "dosing", "patient_support", "disease_awareness",
)
TONALITIES: tuple[str, ...] = ("clinical", "empathetic", "promotional", "conversational")
AESTHETICS: tuple[str, ...] = ("minimal", "data_dense", "visual_story", "bold_branded")

KEY_MESSAGES: dict[str, tuple[str, ...]] = {
    "efficacy": (
        "Cardiozen lowered LDL-C by 52% versus placebo at week 24",
        "Fewer major adverse cardiovascular events in high-risk patients",
        "Consistent efficacy across age, sex and diabetes subgroups",
    ),
    "safety": (
        "Adverse-event rates comparable to placebo over 3 years",
        "No dose adjustment needed in mild to moderate renal impairment",
        "Low discontinuation rate due to adverse events",
    ),
    "access": (
        "Covered on 85% of commercial formularies",
        "Copay as low as $10 per month for eligible patients",
        "Simplified prior authorisation with the access hub",
    ),
    "dosing": (
        "One dose every two weeks, self-administered",
        "Start at the full dose: no titration required",
        "Flexible dosing window of plus or minus 3 days",
    ),
    "patient_support": (
        "Nurse educators help patients start and stay on therapy",
        "Adherence reminders through the patient app",
        "Injection training kit for new patients",
    ),
    "disease_awareness": (
        "1 in 3 patients with ASCVD is not at LDL-C goal",
        "Residual cardiovascular risk after a first event",
        "Familial hypercholesterolaemia is underdiagnosed",
    ),
}
TOPIC_BY_THEME: dict[str, str] = {
    "efficacy": "efficacy data",
    "safety": "safety profile",
    "access": "coverage and access",
    "dosing": "dosing and administration",
    "patient_support": "patient support program",
    "disease_awareness": "residual CV risk",
}
MEDICAL_INQUIRY_TOPICS: tuple[str, ...] = (
    "use in CKD stage 4", "drug interactions with statins", "use in pregnancy",
    "data in elderly patients", "switching from another PCSK9 therapy",
    "missed dose guidance", "storage and stability", "long-term safety data",
    "off-label use in pediatric FH", "lipoprotein(a) effects",
)
CONGRESSES: tuple[str, ...] = (
    "ACC Scientific Session", "ESC Congress", "AHA Scientific Sessions",
    "NLA Scientific Sessions", "Heart Rhythm Society Meeting",
)

# Survey texts
NPS_QUESTION = "How likely are you to recommend Cardiozen's medical and scientific support to a colleague?"
CSAT_QUESTION = "Overall, how satisfied were you with this interaction?"
DIMENSION_QUESTIONS: dict[str, str] = {
    "relevant": "The information was relevant to my patients and practice.",
    "consumable": "The information was easy to digest in the time I had.",
    "accessible": "It was easy to get this information when I needed it.",
    "connective": "The interaction connected me with people or resources I value.",
    "purposeful": "The interaction helped me make better treatment decisions.",
}
ATTITUDE_QUESTIONS: dict[str, str] = {
    "overload": "I receive too much information from pharmaceutical companies.",
    "in_person": "I value in-person visits from sales representatives.",
    "digital": "I prefer to find product information online on my own schedule.",
    "peer": "Opinions of respected peers strongly influence my prescribing.",
    "evidence": "I need to see the full clinical evidence before I prescribe a new therapy.",
}
POSITIVE_COMMENTS: tuple[str, ...] = (
    "Very helpful summary of the outcomes data.",
    "The rep was respectful of my time and brought exactly what I needed.",
    "Great to have the dosing card for my nurses.",
    "Clear answers on coverage, saved my staff a lot of calls.",
    "The MSL discussion of the subgroup data was excellent.",
    "Useful, concise and evidence based.",
    "Loved the patient materials, my patients actually read them.",
    "The webinar speaker was outstanding.",
)
NEUTRAL_COMMENTS: tuple[str, ...] = (
    "Fine, nothing new.",
    "Okay but I already knew most of this.",
    "Would prefer a shorter format.",
    "Some of it was relevant.",
)
NEGATIVE_COMMENTS: tuple[str, ...] = (
    "Too promotional, I want the data not slogans.",
    "Could not find the prescribing information quickly.",
    "The visit ran over and disrupted my clinic.",
    "Content was not relevant to my patient population.",
    "Prior authorisation is still a nightmare.",
)
OVERLOAD_COMMENTS: tuple[str, ...] = (
    "Too many emails, I cannot keep up.",
    "I am overwhelmed by the number of messages from pharma companies.",
    "Please contact me less often, it is too much.",
    "Information overload - I delete most of these without reading.",
    "Every week another visit request, too much.",
    "I get far too many emails and texts; please reduce the frequency.",
)
