# ruff: noqa: RUF001  (non-ASCII names are the point)
"""Offline, seeded generator of documents shaped exactly like randomuser.me ``results[]`` items.

Document ``i`` depends only on ``(seed, i)``, so every batch is reproducible on its own and the
same seed always yields the same users (and the same record ids). The generator reproduces the
API's real messiness: the postcode is an integer for some nationalities and a string for others,
names and places are non-ASCII for many nationalities, the phone formats differ by country and
``id.value`` is sometimes null. A configurable share of records is deliberately broken (missing
field, malformed e-mail, unparsable date, wrong type) so the dead-letter path is exercised.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from userstream.ingest.sources import RawBatch, plan_pages

SOURCE_NAME = "synthetic"
_REFERENCE = datetime(2025, 1, 1, tzinfo=UTC)

BROKEN_KINDS = ("missing_field", "bad_email", "bad_date", "wrong_type", "empty_name")

# nat -> (country, postcode kind, phone pattern, first names, last names, cities/states, id name)
_NATIONS: dict[str, dict[str, Any]] = {
    "US": {
        "country": "United States",
        "postcode": "int5",
        "phone": "(###) ###-####",
        "first": ["Brandon", "Jessica", "Tyler", "Ashley", "Wyatt", "Kaylee"],
        "last": ["Walker", "Reyes", "Hughes", "Carroll", "Ortiz"],
        "places": [("Joliet", "Illinois"), ("Fresno", "California"), ("Frisco", "Texas")],
        "id": "SSN",
    },
    "DE": {
        "country": "Germany",
        "postcode": "int5",
        "phone": "0###-#######",
        "first": ["Jürgen", "Sören", "Käthe", "Björn", "Ute", "Lüder"],
        "last": ["Müller", "Schäfer", "Weiß", "Groß", "Köhler"],
        "places": [("Görlitz", "Sachsen"), ("München", "Bayern"), ("Lübeck", "Schleswig-Holstein")],
        "id": "SVNR",
    },
    "FR": {
        "country": "France",
        "postcode": "int5",
        "phone": "0#-##-##-##-##",
        "first": ["Anaïs", "Loïc", "Céline", "Jérôme", "Noémie"],
        "last": ["Lefèvre", "Girard", "Rousseau", "Mercier", "Brünet"],
        "places": [("Besançon", "Doubs"), ("Nîmes", "Gard"), ("Orléans", "Loiret")],
        "id": "INSEE",
    },
    "GB": {
        "country": "United Kingdom",
        "postcode": "uk",
        "phone": "0##### ######",
        "first": ["Oliver", "Amelia", "Harry", "Isla", "Siobhan"],
        "last": ["Smith", "O'Brien", "Patel", "Davies", "Ó Súilleabháin"],
        "places": [("Leeds", "West Yorkshire"), ("Bath", "Somerset"), ("Derby", "Derbyshire")],
        "id": "NINO",
    },
    "CA": {
        "country": "Canada",
        "postcode": "ca",
        "phone": "###-###-####",
        "first": ["Zoé", "Liam", "Émile", "Chloe", "Mathéo"],
        "last": ["Tremblay", "Gagnon", "Roy", "Côté", "Wong"],
        "places": [
            ("Québec", "Québec"),
            ("Vancouver", "British Columbia"),
            ("Yellowknife", "Northwest Territories"),
        ],
        "id": "SIN",
    },
    "BR": {
        "country": "Brazil",
        "postcode": "br",
        "phone": "(##) ####-####",
        "first": ["João", "Conceição", "Luís", "Iúri", "Araci"],
        "last": ["Gonçalves", "Araújo", "Fernandes", "Conceição", "Peixoto"],
        "places": [("São Luís", "Maranhão"), ("Maringá", "Paraná"), ("Goiânia", "Goiás")],
        "id": "CPF",
    },
    "NL": {
        "country": "Netherlands",
        "postcode": "nl",
        "phone": "(0###) ######",
        "first": ["Sanne", "Joël", "Daan", "Fenna", "Thijs"],
        "last": ["van der Berg", "de Vries", "Jansen", "Bakker", "Smeets"],
        "places": [("Utrecht", "Utrecht"), ("Groningen", "Groningen"), ("Den Haag", "Zuid-Holland")],
        "id": "BSN",
    },
    "TR": {
        "country": "Turkey",
        "postcode": "int5",
        "phone": "(###)-###-####",
        "first": ["Ömer", "Gülşen", "Çağrı", "Şule", "İbrahim"],
        "last": ["Öztürk", "Yıldız", "Çelik", "Şahin", "Akgül"],
        "places": [("İzmir", "İzmir"), ("Eskişehir", "Eskişehir"), ("Şanlıurfa", "Şanlıurfa")],
        "id": "",
    },
    "IR": {
        "country": "Iran",
        "postcode": "int5",
        "phone": "0##-########",
        "first": ["محمدطاها", "نیایش", "آرتین", "یسنا", "پارسا"],
        "last": ["کریمی", "احمدی", "رضایی", "موسوی", "نکو نظر"],
        "places": [("تهران", "تهران"), ("اصفهان", "اصفهان"), ("شیراز", "فارس")],
        "id": "",
    },
    "UA": {
        "country": "Ukraine",
        "postcode": "int5",
        "phone": "(0##) ###-##-##",
        "first": ["Ольга", "Тарас", "Марія", "Богдан", "Євгенія"],
        "last": ["Шевченко", "Коваленко", "Бондаренко", "Ткаченко", "Кравчук"],
        "places": [("Київ", "Київська"), ("Львів", "Львівська"), ("Одеса", "Одеська")],
        "id": "",
    },
    "NO": {
        "country": "Norway",
        "postcode": "int4",
        "phone": "########",
        "first": ["Søren", "Åse", "Ørjan", "Kjærsti", "Håkon"],
        "last": ["Bråthen", "Ødegård", "Sæther", "Haugen", "Ås"],
        "places": [("Tromsø", "Troms"), ("Bærum", "Akershus"), ("Ålesund", "Møre og Romsdal")],
        "id": "FN",
    },
    "IN": {
        "country": "India",
        "postcode": "int6",
        "phone": "#########",
        "first": ["अनिल", "Priya", "Aarav", "दीपिका", "Rohan"],
        "last": ["Sharma", "शर्मा", "Iyer", "Nair", "Kulkarni"],
        "places": [("Pune", "Maharashtra"), ("Kochi", "Kerala"), ("Indore", "Madhya Pradesh")],
        "id": "UIDAI",
    },
}
NATIONALITIES = tuple(sorted(_NATIONS))
_STREETS = ["Main Street", "Station Road", "Rue de la Paix", "Hauptstraße", "Avenida Brasil", "Kirkevegen"]
_WORDS = ["happy", "silver", "blue", "tiny", "brave", "lazy", "golden", "purple", "crazy", "heavy"]
_ANIMALS = ["tiger", "swan", "koala", "zebra", "rabbit", "panda", "fish", "bird", "leopard", "goose"]
_DOMAINS = ["example.com", "example.org", "mail.example.net"]
_TITLES = {"male": ["Mr", "Monsieur", "Herr"], "female": ["Ms", "Mrs", "Miss", "Madame"]}


def _digits(rng: random.Random, pattern: str) -> str:
    return "".join(str(rng.randint(0, 9)) if char == "#" else char for char in pattern)


def _postcode(rng: random.Random, kind: str) -> int | str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    if kind == "int4":
        return rng.randint(1000, 9999)
    if kind == "int5":
        return rng.randint(10000, 99999)
    if kind == "int6":
        return rng.randint(100000, 999999)
    if kind == "uk":
        outward = f"{rng.choice(letters)}{rng.choice(letters)}{rng.randint(1, 99)}"
        return f"{outward} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"
    if kind == "ca":
        forward = f"{rng.choice(letters)}{rng.randint(0, 9)}{rng.choice(letters)}"
        return f"{forward} {rng.randint(0, 9)}{rng.choice(letters)}{rng.randint(0, 9)}"
    if kind == "br":
        return f"{rng.randint(10000, 99999)}-{rng.randint(100, 999)}"
    if kind == "nl":
        return f"{rng.randint(1000, 9999)} {rng.choice(letters)}{rng.choice(letters)}"
    raise ValueError(kind)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _years_between(start: datetime, end: datetime) -> int:
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def _ascii_slug(text: str) -> str:
    slug = "".join(char for char in text.lower() if char.isascii() and char.isalnum())
    return slug or "user"


def generate_user(seed: int, index: int) -> dict[str, Any]:
    """The valid (unbroken) document number ``index`` of ``seed``."""
    rng = random.Random(f"userstream-synthetic:{seed}:{index}")
    nat = rng.choice(NATIONALITIES)
    nation = _NATIONS[nat]
    gender = rng.choice(["male", "female"])
    first, last = rng.choice(nation["first"]), rng.choice(nation["last"])
    city, state = rng.choice(nation["places"])
    dob = _REFERENCE - timedelta(days=rng.randint(18 * 365, 80 * 365), seconds=rng.randint(0, 86_399))
    dob = dob.replace(microsecond=rng.randint(0, 999) * 1000)
    registered = _REFERENCE - timedelta(days=rng.randint(30, 20 * 365), seconds=rng.randint(0, 86_399))
    registered = registered.replace(microsecond=rng.randint(0, 999) * 1000)
    password = rng.choice(_WORDS) + str(rng.randint(1, 9999))
    salt = "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(8)
    )
    salted = (password + salt).encode("utf-8")
    portrait = "men" if gender == "male" else "women"
    picture_number = rng.randint(0, 99)
    id_value = None if not nation["id"] or rng.random() < 0.1 else _digits(rng, "###-##-####")
    email_local = f"{_ascii_slug(first)}.{_ascii_slug(last)}{index}"
    email = f"{email_local}@{rng.choice(_DOMAINS)}"
    if rng.random() < 0.05:  # the API's e-mails are lower-case; exercise the normalisation anyway
        email = f"  {email.upper()} "
    offset_hours = rng.randint(-11, 12)
    return {
        "gender": gender,
        "name": {"title": rng.choice(_TITLES[gender]), "first": first, "last": last},
        "location": {
            "street": {"number": rng.randint(1, 9999), "name": rng.choice(_STREETS)},
            "city": city,
            "state": state,
            "country": nation["country"],
            "postcode": _postcode(rng, nation["postcode"]),
            "coordinates": {
                "latitude": f"{rng.uniform(-90, 90):.4f}",
                "longitude": f"{rng.uniform(-180, 180):.4f}",
            },
            "timezone": {"offset": f"{offset_hours:+d}:00", "description": "synthetic time zone"},
        },
        "email": email,
        "login": {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "username": f"{rng.choice(_WORDS)}{rng.choice(_ANIMALS)}{rng.randint(100, 999)}",
            "password": password,
            "salt": salt,
            "md5": hashlib.md5(salted, usedforsecurity=False).hexdigest(),
            "sha1": hashlib.sha1(salted, usedforsecurity=False).hexdigest(),
            "sha256": hashlib.sha256(salted).hexdigest(),
        },
        "dob": {"date": _iso(dob), "age": _years_between(dob, _REFERENCE)},
        "registered": {"date": _iso(registered), "age": _years_between(registered, _REFERENCE)},
        "phone": _digits(rng, nation["phone"]),
        "cell": _digits(rng, nation["phone"]),
        "id": {"name": nation["id"], "value": id_value},
        "picture": {
            "large": f"https://randomuser.me/api/portraits/{portrait}/{picture_number}.jpg",
            "medium": f"https://randomuser.me/api/portraits/med/{portrait}/{picture_number}.jpg",
            "thumbnail": f"https://randomuser.me/api/portraits/thumb/{portrait}/{picture_number}.jpg",
        },
        "nat": nat,
    }


def break_user(document: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    """Damage a document in one of :data:`BROKEN_KINDS` (the stream must dead-letter it)."""
    if kind == "missing_field":
        victim = rng.choice(["email", "name", "dob", "login"])
        del document[victim]
    elif kind == "bad_email":
        document["email"] = document["email"].replace("@", " at ")
    elif kind == "bad_date":
        document["dob"]["date"] = rng.choice(["31/02/1990", "not a date", "1990-13-45T99:00:00Z"])
    elif kind == "wrong_type":
        document["dob"]["age"] = "thirty-one"
    elif kind == "empty_name":
        document["name"]["last"] = "   "
    else:
        raise ValueError(f"unknown broken kind {kind!r}")
    return document


def generate(seed: int, index: int, broken_rate: float) -> tuple[dict[str, Any], str | None]:
    """Document ``index`` and the broken kind applied to it (None when it is valid)."""
    document = generate_user(seed, index)
    rng = random.Random(f"userstream-synthetic-broken:{seed}:{index}")
    if rng.random() < broken_rate:
        kind = rng.choice(BROKEN_KINDS)
        return break_user(document, kind, rng), kind
    return document, None


class SyntheticSource:
    """Deterministic offline source: the default, and the one tests and benchmarks use."""

    name = SOURCE_NAME

    def __init__(self, seed: int = 42, broken_rate: float = 0.01) -> None:
        self.seed = seed
        self.broken_rate = broken_rate

    def batch_id(self, page: int, size: int) -> str:
        return f"synthetic:seed={self.seed}:broken={self.broken_rate:g}:page={page}:size={size}"

    def batches(self, records: int, batch_size: int) -> Iterator[RawBatch]:
        start = 0
        for page, size in plan_pages(records, batch_size):
            documents = [
                generate(self.seed, index, self.broken_rate)[0] for index in range(start, start + size)
            ]
            start += size
            yield RawBatch(batch_id=self.batch_id(page, size), source=SOURCE_NAME, documents=documents)
