"""Write the small NER sample shipped in the package (seqnlp/samples/ner/).

The sentences are generated from templates and name lists written for seqnlp
(no corpus text), so the sample can ship under the project's licence. It exists
for the quickstart recipe and smoke tests: a model learns it in about a minute.
It is not a benchmark. Deterministic: `python scripts/make_ner_sample.py`.
"""

from __future__ import annotations

import random
from pathlib import Path

PER = [
    "Ana García",
    "Luis Romero",
    "Marta Vidal",
    "Pedro Sanz",
    "Elena Ruiz",
    "Jorge Molina",
    "Sofía Navarro",
    "Diego Herrera",
    "Lucía Campos",
    "Tomás Ortega",
    "Irene Blasco",
    "Pablo Gil",
    "Carmen Soto",
    "Rafael Iglesias",
    "Nuria Prieto",
    "Óscar Lozano",
    "Clara Méndez",
    "Hugo Delgado",
    "Teresa Rey",
    "Andrés Pastor",
    "Beatriz Fuentes",
    "Marcos Calvo",
    "Alba Serrano",
    "Iván Morales",
]
ORG = [
    "Banco Central",
    "Telefónica",
    "la Universidad de Sevilla",
    "el Real Madrid",
    "la Cruz Roja",
    "Iberia",
    "el Ayuntamiento de Vigo",
    "Naciones Unidas",
    "la OTAN",
    "el Partido Verde",
    "Repsol",
    "la Agencia EFE",
    "el Ministerio de Salud",
    "la Fundación Lumen",
    "Grupo Altair",
    "Editorial Norte",
]
LOC = [
    "Madrid",
    "Barcelona",
    "Valencia",
    "Bilbao",
    "Sevilla",
    "Lisboa",
    "París",
    "Roma",
    "Buenos Aires",
    "Lima",
    "Quito",
    "Montevideo",
    "Andalucía",
    "Galicia",
    "el río Ebro",
    "los Pirineos",
    "Canarias",
    "Toledo",
    "Zaragoza",
    "Granada",
]
MISC = [
    "el Mundial",
    "los Juegos Olímpicos",
    "el Premio Cervantes",
    "la Copa del Rey",
    "el euro",
    "la Semana Santa",
    "el Tour de Francia",
    "la Liga",
    "el Festival de Cine",
    "la Guerra Civil",
]
TEMPLATES = [
    "{PER} llegó ayer a {LOC} para reunirse con {ORG} .",
    "Según {ORG} , {PER} presentará el informe en {LOC} .",
    "El portavoz de {ORG} , {PER} , anunció su dimisión .",
    "{PER} ganó {MISC} tras una temporada difícil .",
    "La delegación de {LOC} visitará {LOC} la próxima semana .",
    "{ORG} abrirá una oficina en {LOC} antes de {MISC} .",
    "Miles de personas asistieron a {MISC} en {LOC} .",
    "{PER} y {PER} firmaron un acuerdo con {ORG} .",
    "El presidente de {ORG} criticó la decisión de {ORG} .",
    "En {LOC} , {PER} recordó los años de {MISC} .",
    "Los precios subieron un {NUM} por ciento en {LOC} , informó {ORG} .",
    "{PER} , de {NUM} años , vive en {LOC} desde {YEAR} .",
    "La reunión terminó sin acuerdo , dijo {PER} .",
    "El tiempo será soleado en {LOC} y lluvioso en {LOC} .",
    "{ORG} contrató a {NUM} trabajadores en {YEAR} .",
    "Nadie esperaba la victoria de {PER} en {MISC} .",
]


def fill(template: str, rng: random.Random) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            slot = piece[1:-1]
            if slot in ("NUM", "YEAR"):
                value = str(rng.randint(2, 99) if slot == "NUM" else rng.randint(1950, 2024))
                out.append((value, "O"))
                continue
            name = rng.choice({"PER": PER, "ORG": ORG, "LOC": LOC, "MISC": MISC}[slot])
            words = name.split()
            # Articles that start an organisation or event stay outside the entity.
            if words[0] in ("el", "la", "los", "las"):
                out.append((words[0], "O"))
                words = words[1:]
            out.extend((w, f"{'B' if i == 0 else 'I'}-{slot}") for i, w in enumerate(words))
        else:
            out.append((piece, "O"))
    return out


def write(path: Path, n: int, rng: random.Random) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(n):
            for token, tag in fill(rng.choice(TEMPLATES), rng):
                handle.write(f"{token} {tag}\n")
            handle.write("\n")


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "seqnlp" / "samples" / "ner"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2002)
    for split, n in (("train", 600), ("validation", 150), ("test", 150)):
        write(out / f"{split}.conll", n, rng)


if __name__ == "__main__":
    main()
