"""Names as the field writes them: Somali, Arabic and English spellings of one name brought
to one canonical form, titles dropped, and phonetic keys for blocking. Pure Python."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import jellyfish

# Canonical form → spellings seen in Somali (Latin orthography: c = ʿayn, x = ḥ, doubled
# vowels are long), Arabic transliterations and English/Swahili registers. Anything not
# listed still goes through the orthographic fold (`skeleton`), so "Cabdiwali" and
# "Abdiwali" meet without an entry; entries are for pairs the fold cannot see
# (Faadumo/Fatima: d for ṭ, -o for -a) and to keep the canonical form readable.
# Mohamed (Maxamed) and Mohamud (Maxamuud) are different names in Somali: kept apart.
_VARIANTS = """
# Somali / Arabic, men
mohamed: maxamed maxammed mohammed mohamad mohammad muhammad muhammed muhamed mohamet mahamed
    mahammed mahamat mohmed mohd mhd mohamedi muhamadi
mohamud: maxamuud maxmuud mahmoud mahmud mohamoud mahamud mahmood mohmoud mahamoud
abdi: cabdi abdy abdii
abdullahi: cabdullaahi cabdilaahi cabdillaahi abdullah abdulahi abdallah abdalla abdilahi
    abdillahi abdullaahi abdulla abdallahi
abdirahman: cabdiraxmaan cabduraxmaan abdulrahman abdurahman abdelrahman abdirahmaan abdiraxman
    abdurrahman abdalrahman abderahman
abdikadir: cabdulqaadir cabdiqaadir abdulkadir abdiqadir abdulqadir abdikadar abdulkader
    abdelkader abdulqaadir abdiqaadir abdikaadir
abdiaziz: cabdicasiis cabdulcasiis abdulaziz abdelaziz abdiasis abdicasis
abdirashid: cabdirashiid abdulrashid abdirashiid abdurashid abdirasheed
abdirizak: cabdirisaaq abdirisak abdirazak abdulrazak abdirisaq abdirazaq
abdiwali: cabdiwali abdulwali abdiwaali cabdiwaali
abdinur: cabdinuur abdinuur abdulnur abdinoor
abdisalam: cabdisalaan abdisalaan abdulsalam abdisalaam abdessalam
abdikarim: cabdikariim abdikariim abdulkarim abdulkareem abdikareem
abdulle: cabdulle abdule
abukar: abuukar abubakar abubakr abubaker abuubakar abubakari
hassan: xasan xassan hasan hasaan hassen xasaan
hussein: xuseen xusayn husein hussain husain husen hussien huseen
omar: cumar umar omer oumar umer cumer
osman: cusmaan usman othman uthman usmaan osmaan cismaan ismaan
ali: cali aly alii caliy
ahmed: axmed ahmad ahmet axmad ahamed ahmedi
ibrahim: ibraahim ibraahin ibrahin ibrahiim ibraheem ibrahem ebrahim
yusuf: yuusuf yousuf yousef yusef yoosuf yussuf youssef yusuph
ismail: ismaaciil ismaciil ismael ismaail ismaiil ismayil
isa: ciise ciisa issa eisa iise
musa: muuse muse moussa mussa
adan: aadan aden adam aadam adenn
nur: nuur noor nour nuru nuure
nuradin: nuuradiin nurudin nuradeen nuruddin nurdin nuradiin
sharif: shariif shareef sherif shariff shariifo
said: saciid saeed saiid saed sayid
khalid: khaalid xaalid halid khaled khalit
rashid: rashiid rasheed rachid
salim: saalim saleem selim
bashir: bashiir basheer beshir
mustafa: mustafe mustapha mustaf
hamza: xamza hamsa xamsa
jama: jaamac jamac jaama
farah: faarax farax fara
warsame: warsama warsamo
hirsi: xirsi hersi xersi
guled: guuleed guleed gulad
salad: salaad saalad
yasin: yaasiin yassin yaseen yasiin
idris: idiris idriis idrees idiriis
mahad: maxad mahat
jamal: jamaal gamal
nasir: naasir nasser nasir naser
karim: kariim kareem kerim
hamid: xaamid xamiid hamiid hameed
dahir: daahir dhahir zahir daher tahir taahir
elmi: cilmi ilmi
awale: cawaale awaale
abdow: cabdow
sheikh:
haji:
# Somali / Arabic, women
fatima: faadumo fadumo fatuma fatma fatimah faduma fatumo faatima
halima: xaliimo xalimo haliima halimo halimah haliimo
khadija: khadiija hadija kadija xadiija hadiija khadijah kadiija khadiijo hadijo xadiijo
aisha: caasha asha aysha ayesha aishah caaisha caysha aasha
mariam: maryan maryam mariyam mariyan maryama mariama maryamo
zahra: sahra zahro sahro zahara zahraa
hawa: xaawo hawo haawa xawa hawwa
amina: aamina aminah aaminah amiina aamiina
zeinab: seynab saynab zaynab zainab sainab seinab zenab
hafsa: xafsa xafso hafso hafza
sadia: sacdiya sadiya saadia sacdia saadiya
ruqia: ruqiya rukia ruqiyo ruqaya rukiya
sumaya: sumeya sumaiya sumaya sumayo sumeyo
safiya: safiyo safia saafiya safiyya
kaltun: kaltuum kaltuun kalthum kaltoum kaltum
fartun: fartuun fartoon
anab: canab
awo: cawo aawo
ayan: ayaan ayyan
ilhan: ilhaan ilham
hamdi: xamdi
deqa: deeqa deka deeka
hodan: hoodan
sagal: sagaal
nasra: nasro
muna: muuna
hibo: hiba
idil: iidil
asli: casli
shamsa: shamso
ubah: ubax
istar: istarlin
leyla: layla leila laila leyla
# Kenya: Christian names (kept as they are: the Somali fold would blur them)
mary: marie
john: jon johnie
joseph: josef jozef
peter: petro
paul: paulo
james:
grace:
catherine: katherine cathrine catharine kathryn katrina
jane:
lucy: lucie
mercy:
joyce:
alice:
esther:
ruth:
faith:
charles:
francis:
vincent:
patrick:
rebecca: rebeka rebekah
cecilia:
christine: kristine christina
caroline: carolyne karoline
jacinta:
collins:
victor:
felix:
alex:
alexander:
dorcas:
agnes:
beatrice:
brian: bryan
kevin:
david:
daniel:
samuel:
stephen: steven stephene
michael: micheal
elizabeth:
margaret:
florence:
monica:
nancy:
susan:
sarah: sara
eunice:
purity:
dennis:
moses:
isaac:
# Kenya: Kikuyu, Luo, Kalenjin, Luhya, Kamba
wanjiru:
wanjiku:
wambui:
njeri:
nyambura:
wairimu:
kamau:
njoroge:
mwangi:
kariuki:
otieno:
ochieng: ochien
odhiambo: odiambo
onyango:
omondi:
achieng:
akinyi:
atieno:
auma:
kiprono:
kiptoo:
chebet:
cherono:
kipchoge:
wafula:
wekesa:
barasa:
mutua:
musyoka:
mwende:
"""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _parse_variants(text: str) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """'canonical: spelling spelling …' lines (indented lines continue the previous one)
    under '# section' headings → spellings per canonical name, section per canonical name."""
    variants: dict[str, tuple[str, ...]] = {}
    sections: dict[str, str] = {}
    canonical = section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("# ").split(":")[0].split(",")[0]
            continue
        if not line.strip():
            continue
        if line.startswith(" "):
            variants[canonical] += tuple(line.split())
            continue
        canonical, _, spellings = line.partition(":")
        variants[canonical] = tuple(spellings.split())
        sections[canonical] = section
    return variants, sections


NAME_VARIANTS, _SECTIONS = _parse_variants(_VARIANTS)
# Somali and Arabic names are few and shared by many: a pair of them names thousands of
# people in a district, so blocking qualifies such a pair further (see matching).
COMMON_NAMES = frozenset(
    name for name, section in _SECTIONS.items() if section == "Somali / Arabic"
)

# Titles and honorifics: dropped unless nothing else is left.
TITLES = _words(
    """
    sheikh sheekh sheik shaikh shaykh shiekh shekh sh shk haji hajji haj hajj xaaji xaji alhaji
    alhaj hajia mr mrs ms miss mister dr doctor ustaad ustad ustaz ustadh macalin macallin
    mwalimu mama baba mzee eng engineer prof professor rev reverend pastor fr sr hon honourable
    honorable capt col gen sgt
    """
)
# Connectors that join names without being one: "Ahmed bin Ali", "al-Amin".
CONNECTORS = _words("bin ibn binti bint al el ul il")
# "Abdi"/"Abdu" are names on their own; glue them to the next word only before one of
# God's names (the second half of an Abd- name). "Abdul", "Abd", "Abdel" are always glued.
_ALWAYS_GLUED = _words("abd abdul abdel abdal abdil abdoul abdur cabd cabdul cabdil")
_GLUED_BEFORE_GODS_NAME = _words("abdi cabdi abdu abdo abdou")
_GODS_NAMES = _words(
    """
    rahman raxmaan rahmaan raxman rahim raxiim rahiim kadir qadir qaadir kaadir kader aziz
    casiis asis casis latif latiif lahi llahi laahi llaahi ullahi allah allahi salam salaam
    salaan wahab wahaab karim kariim kareem nasir naasir hakim xakiim majid majiid fatah fitaax
    fitah rashid rashiid razak razaq rizak risaaq malik maalik hamid xamiid shakur shakuur ghani
    qani jabbar jabaar samad samed wali waali hafid xafiid hadi haadi mutalib mutaalib nur nuur
    noor
    """
)
_ABU = frozenset({"abu", "abuu", "abou"})
# What is left of an Abd- name once the prefix is taken off, when the name is Abdullahi.
_ALLAH_REST = frozenset({"a", "ah", "ahi", "ai", "i", "ay", "ahy", "ayi"})
ABDULLAHI_SKELETON = "abdulahi"

_SKIP_CHARS = str.maketrans("", "", "'’‘`ʼʻʿʾ")
_NON_LETTER = re.compile(r"[^a-z]+")
_DOUBLED = re.compile(r"(.)\1+")
_ABD = re.compile(r"^abd(ul|el|al|il|u|i|e|a)?(.*)$")


def ascii_fold(text: str) -> str:
    """Lower case, accents off, apostrophes (glottal stop, ʿayn) dropped, other marks to
    spaces: 'Ca\u2019isha Xasan-Nuur' → 'caisha xasan nuur'."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SKIP_CHARS))
    if decomposed.isascii():  # most names: no mark to drop, and no loop over characters
        plain = decomposed
    else:
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_LETTER.sub(" ", plain.lower()).strip()


def skeleton(token: str) -> str:
    """The orthographic fold of one lower-case token: Somali, Arabic and English spellings
    of a name land on the same string. Not for display: 'cabdiraxmaan' → 'abdirahman',
    'faadumo' → 'fadumu', 'noor' → 'nur'."""
    s = token.replace("ph", "f").replace("ck", "k")
    s = s.replace("sh", "$").replace("ch", "%")  # protect the digraphs English keeps
    s = s.replace("kh", "h").replace("gh", "g").replace("dh", "d").replace("th", "t")
    # Somali x is ḥ, q is the uvular k, there is no z, and c is ʿayn (silent in English).
    s = s.replace("x", "h").replace("q", "k").replace("z", "s").replace("c", "")
    s = s.replace("ou", "u").replace("o", "u")
    s = s.replace("ei", "ai").replace("ey", "ay").replace("ai", "ay")
    s = _DOUBLED.sub(r"\1", s)
    if len(s) > 2 and s.endswith("h") and s[-2] in "aeiu":
        s = s[:-1]
    s = s.replace("$", "sh").replace("%", "ch")
    match = _ABD.match(s)
    if match and s != "abd":
        rest = match.group(2)
        if rest in _ALLAH_REST:
            s = ABDULLAHI_SKELETON
        elif len(rest) >= 3:
            s = "abdi" + rest
    return s


def _build_indexes() -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, str]]]:
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    clashes: dict[str, tuple[str, str]] = {}
    for canonical, variants in NAME_VARIANTS.items():
        for spelling in (canonical, *variants):
            exact.setdefault(spelling, canonical)
            key = skeleton(spelling)
            if key in folded and folded[key] != canonical:
                clashes[spelling] = (folded[key], canonical)
                continue
            folded[key] = canonical
    return exact, folded, clashes


_EXACT, _FOLDED, SKELETON_CLASHES = _build_indexes()
# Folds that land on another listed name. Written as listed they still map right (the exact
# index comes first); only a misspelling of them can be taken for the other name.
KNOWN_CLASHES = frozenset({"isaac"})  # Isaac folds onto Isa (Ciise): c is ʿayn in Somali


@lru_cache(maxsize=50_000)
def canonical_token(token: str) -> str:
    """One lower-case ASCII token to its canonical form: the listed canonical name when
    the spelling or its fold is known, else the fold itself."""
    known = _EXACT.get(token)
    if known is not None:
        return known
    key = skeleton(token)
    return _FOLDED.get(key, key)


def _glue_prefixes(words: list[str]) -> list[str]:
    glued: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        j = i + 1
        if word in _ALWAYS_GLUED or word in _GLUED_BEFORE_GODS_NAME or word in _ABU:
            connector = j < len(words) and words[j] in CONNECTORS | {"ar", "ur", "as", "ad"}
            k = j + 1 if connector else j
            if k < len(words):
                after = words[k]
                if (
                    word in _ALWAYS_GLUED
                    or word in _ABU
                    or connector
                    or after in _GODS_NAMES
                    or skeleton(after) in _GODS_NAMES
                ):
                    glued.append(word + after)
                    i = k + 1
                    continue
        glued.append(word)
        i = j
    return glued


@lru_cache(maxsize=200_000)
def _tokens(text: str) -> tuple[str, ...]:
    words = ascii_fold(text).split()
    kept = [w for w in words if w not in TITLES]
    if not kept:  # "Haji" alone is a name, not a title
        kept = words
    kept = _glue_prefixes(kept)
    kept = [w for w in kept if w not in CONNECTORS] or kept
    return tuple(canonical_token(w) for w in kept)


def name_tokens(text: str | None) -> list[str]:
    """Canonical tokens in the order written: 'Sh. Maxamed Cali Xasan' →
    ['mohamed', 'ali', 'hassan']. Somali order is given, father, grandfather."""
    if not text:
        return []
    return list(_tokens(text))


def normalise_name(text: str | None) -> str:
    """Lower-case ASCII canonical name without titles: 'Xaaji Cabdullaahi Maxamed' →
    'abdullahi mohamed'."""
    return " ".join(name_tokens(text))


@lru_cache(maxsize=100_000)
def phonetic_code(token: str) -> str:
    """Metaphone of a canonical token ('mohamed' → 'MHMT'); the fold before it already
    joined the Somali spellings."""
    return jellyfish.metaphone(token) or token.upper()


def phonetic_keys(text: str | None) -> set[str]:
    """Keys for blocking: 'g:' given name, 'gf:' given + father, 'p:' every unordered pair
    of the first three names (so 'Wanjiru Mary Kamau' meets 'Mary Wanjiru Kamau')."""
    codes = [phonetic_code(token) for token in name_tokens(text)][:3]
    if not codes:
        return set()
    keys = {f"g:{codes[0]}"}
    if len(codes) > 1:
        keys.add(f"gf:{codes[0]}+{codes[1]}")
    for i in range(len(codes)):
        for j in range(i + 1, len(codes)):
            low, high = sorted((codes[i], codes[j]))
            keys.add(f"p:{low}+{high}")
    return keys
