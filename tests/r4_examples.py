"""The official FHIR R4 examples (npm package `hl7.fhir.r4.examples` 4.0.1) for tests.

`package_dir()` finds an unpacked copy, or fetches the package with `npm pack` and unpacks it
into `.cache/` (git-ignored). `clinical_examples()` loads the examples of the clinical resource
types and keeps those a FHIR server must accept: a valid FHIR id and a body the R4B models of
`fhir.resources` validate (the server's own write check).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"
ENV_DIR = "CARENET_R4_EXAMPLES"  # a directory holding an unpacked package (its package.json)
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / PACKAGE
NPM_TIMEOUT_S = 300

# The clinical resource types of FHIR R4, from the resource list
# (https://hl7.org/fhir/R4/resourcelist.html): the whole Clinical module, by its groups, and
# the resources of other modules that a shared care record holds about a person's care.
CLINICAL_MODULE = {
    "Summary": ("AllergyIntolerance", "AdverseEvent", "Condition", "Procedure",
                "FamilyMemberHistory", "ClinicalImpression", "DetectedIssue"),
    "Diagnostics": ("Observation", "Media", "DiagnosticReport", "Specimen", "BodyStructure",
                    "ImagingStudy", "QuestionnaireResponse", "MolecularSequence"),
    "Medications": ("MedicationRequest", "MedicationAdministration", "MedicationDispense",
                    "MedicationStatement", "Medication", "MedicationKnowledge", "Immunization",
                    "ImmunizationEvaluation", "ImmunizationRecommendation"),
    "Care Provision": ("CarePlan", "CareTeam", "Goal", "ServiceRequest", "NutritionOrder",
                       "VisionPrescription", "RiskAssessment", "RequestGroup"),
    "Request & Response": ("Communication", "CommunicationRequest", "DeviceRequest",
                           "DeviceUseStatement", "GuidanceResponse", "SupplyRequest",
                           "SupplyDelivery"),
}
CARE_RECORD = (
    "Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Organization", "Encounter",
    "EpisodeOfCare", "Appointment", "Flag", "List", "Communication", "CommunicationRequest",
    "Task", "Consent", "Provenance", "DocumentReference", "Composition", "QuestionnaireResponse",
    "Questionnaire", "CareTeam", "Goal", "CarePlan", "RiskAssessment",
)
CLINICAL_TYPES: frozenset[str] = frozenset(
    [t for group in CLINICAL_MODULE.values() for t in group] + list(CARE_RECORD)
)

# A FHIR id (https://hl7.org/fhir/R4/datatypes.html#id).
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class Unavailable(RuntimeError):
    """The package is not on disk and could not be fetched (no npm, no registry)."""


def _is_package(path: Path) -> bool:
    manifest = path / "package.json"
    if not manifest.is_file():
        return False
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return meta.get("name") == PACKAGE and meta.get("version") == VERSION


def package_dir() -> Path:
    """The unpacked package: `$CARENET_R4_EXAMPLES`, the cache, or fetched with npm now."""
    configured = os.environ.get(ENV_DIR)
    if configured:
        path = Path(configured)
        for candidate in (path, path / "package"):
            if _is_package(candidate):
                return candidate
        raise Unavailable(f"${ENV_DIR}={configured} holds no unpacked {PACKAGE}@{VERSION}.")
    target = CACHE / "package"
    if _is_package(target):
        return target
    return _fetch(CACHE)


def _fetch(cache: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable(f"npm is not installed, so {PACKAGE}@{VERSION} cannot be fetched.")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
        work = Path(tmp)
        try:
            proc = subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(work)],
                cwd=work, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"npm pack {PACKAGE}@{VERSION} failed: {exc}") from None
        tarballs = sorted(work.glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise Unavailable(f"npm pack {PACKAGE}@{VERSION} failed (exit {proc.returncode}): "
                              f"{(proc.stderr or proc.stdout).strip()[:600]}")
        unpacked = work / "unpacked"
        with tarfile.open(tarballs[0], "r:gz") as tar:
            tar.extractall(unpacked, filter="data")
        if not _is_package(unpacked / "package"):
            raise Unavailable(f"The tarball npm fetched is not {PACKAGE}@{VERSION}.")
        target = cache / "package"
        try:  # atomic: a concurrent run may have finished first, and its copy is as good
            (unpacked / "package").rename(target)
        except OSError:
            if not _is_package(target):
                raise
    return target


@dataclass(frozen=True)
class Example:
    """One example: its file, type, id and the exact JSON text of the package."""

    file: str
    type: str
    id: str
    text: bytes


@dataclass
class Examples:
    """The clinical examples of the package, and why the others were left out."""

    accepted: list[Example] = field(default_factory=list)
    found: int = 0
    bad_id: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # file name -> fhir.resources error


def clinical_examples(package: Path) -> Examples:
    """Every example of a clinical type, filtered to the ones a server must accept."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    out = Examples()
    for path in sorted(package.glob("*.json")):
        if path.name == "package.json" or path.name.startswith("."):
            continue
        text = path.read_bytes()
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("resourceType") not in CLINICAL_TYPES:
            continue
        out.found += 1
        if not isinstance(body.get("id"), str) or not FHIR_ID.match(body["id"]):
            out.bad_id.append(path.name)
            continue
        try:
            get_fhir_model_class(body["resourceType"]).model_validate(body)
        except ValidationError as exc:
            out.rejected[path.name] = str(exc).splitlines()[0]
            continue
        out.accepted.append(Example(path.name, body["resourceType"], body["id"], text))
    return out
