"""The decision table: role x relationship x consent x label x interaction, each cell asserted.

Each row is one resource and one principal; its last three columns are the expected decision
for read, create and update: y (allowed), n (denied), bg (allowed through break-glass, to be
audited as ETREAT). The expectations are written out here from the documented rules
(consent/policy.py, consent/data/*.csv), not computed by the code under test.

Columns:
- who: gp, pn (practice nurse), cn (community nurse), ph (pharmacist), sw (social worker),
  cm (case manager), adm (admin) -- staff of tests.consent.support.STAFF; po (privacy
  officer); sys-net (a network job, no organisation); sys-a (practice A's EHR system);
  pat (the patient pat-1); carer (RelatedPerson/rp-1, carer of pat-1).
- rel: the principal's relationship with pat-1: registered, care-team, referral, claimed
  (self-claimed), none, bg (none, but an open break-glass for pat-1); self / other (the
  patient's own record, or another patient's); proxy (the carer's RelatedPerson is active).
- consent: pat-1's patient-privacy Consent (tests.consent.support.CONSENTS).
- label: the resource's security label, - for none.
- type: the resource type; Practitioner belongs to no patient.
- author: meta.source of the resource: own (the principal's organisation), other (the
  hospital), self (the principal: a patient's or carer's own entry).
"""

from __future__ import annotations

import pytest

from consent import consents
from consent.policy import ResourceMeta, decide
from consent.principals import AccessContext, Kind, PatientFacts, Relationship
from tests.consent.support import CONSENTS, HOSPITAL, LABELS, NOW, consent, principal

TABLE = """
# who  rel        consent       label type                author read create update
gp      registered none          -     Observation         other y  y  y
gp      care-team  none          -     Observation         other y  y  y
gp      referral   none          -     Observation         other y  y  y
gp      claimed    none          -     Observation         other y  y  y
gp      none       none          -     Observation         other n  n  n
gp      bg         none          -     Observation         other bg bg bg
pn      registered none          -     Observation         other y  y  y
pn      care-team  none          -     Observation         other y  y  y
pn      referral   none          -     Observation         other y  y  y
pn      claimed    none          -     Observation         other y  y  y
pn      none       none          -     Observation         other n  n  n
pn      bg         none          -     Observation         other bg bg bg
cn      registered none          -     Observation         other y  y  y
cn      care-team  none          -     Observation         other y  y  y
cn      referral   none          -     Observation         other y  y  y
cn      claimed    none          -     Observation         other y  y  y
cn      none       none          -     Observation         other n  n  n
cn      bg         none          -     Observation         other bg bg bg
ph      registered none          -     Observation         other y  n  n
ph      care-team  none          -     Observation         other y  n  n
ph      referral   none          -     Observation         other y  n  n
ph      claimed    none          -     Observation         other y  n  n
ph      none       none          -     Observation         other n  n  n
ph      bg         none          -     Observation         other bg n  n
sw      registered none          -     Observation         other n  n  n
sw      care-team  none          -     Observation         other n  n  n
sw      referral   none          -     Observation         other n  n  n
sw      claimed    none          -     Observation         other n  n  n
sw      none       none          -     Observation         other n  n  n
sw      bg         none          -     Observation         other n  n  n
cm      registered none          -     Observation         other y  n  n
cm      care-team  none          -     Observation         other y  n  n
cm      referral   none          -     Observation         other y  n  n
cm      claimed    none          -     Observation         other y  n  n
cm      none       none          -     Observation         other n  n  n
cm      bg         none          -     Observation         other bg n  n
adm     registered none          -     Observation         other n  n  n
adm     care-team  none          -     Observation         other n  n  n
adm     referral   none          -     Observation         other n  n  n
adm     claimed    none          -     Observation         other n  n  n
adm     none       none          -     Observation         other n  n  n
adm     bg         none          -     Observation         other n  n  n
gp      care-team  none          R     Condition           other y  y  y
gp      care-team  none          V     Condition           other n  n  n
gp      care-team  none          PSY   Condition           other y  y  y
gp      care-team  none          SEX   Condition           other y  y  y
gp      care-team  none          SDV   Condition           other y  y  y
gp      care-team  none          NOPAT Condition           other y  y  y
pn      care-team  none          R     Condition           other n  n  n
pn      care-team  none          V     Condition           other n  n  n
pn      care-team  none          PSY   Condition           other n  n  n
pn      care-team  none          SEX   Condition           other y  y  y
pn      care-team  none          SDV   Condition           other n  n  n
pn      care-team  none          NOPAT Condition           other y  y  y
cn      care-team  none          R     Condition           other n  n  n
cn      care-team  none          V     Condition           other n  n  n
cn      care-team  none          PSY   Condition           other n  n  n
cn      care-team  none          SEX   Condition           other n  n  n
cn      care-team  none          SDV   Condition           other n  n  n
cn      care-team  none          NOPAT Condition           other y  y  y
ph      care-team  none          R     Condition           other n  n  n
ph      care-team  none          V     Condition           other n  n  n
ph      care-team  none          PSY   Condition           other n  n  n
ph      care-team  none          SEX   Condition           other n  n  n
ph      care-team  none          SDV   Condition           other n  n  n
ph      care-team  none          NOPAT Condition           other y  n  n
sw      care-team  none          R     Condition           other n  n  n
sw      care-team  none          V     Condition           other n  n  n
sw      care-team  none          PSY   Condition           other n  n  n
sw      care-team  none          SEX   Condition           other n  n  n
sw      care-team  none          SDV   Condition           other y  n  n
sw      care-team  none          NOPAT Condition           other y  n  n
cm      care-team  none          R     Condition           other n  n  n
cm      care-team  none          V     Condition           other n  n  n
cm      care-team  none          PSY   Condition           other n  n  n
cm      care-team  none          SEX   Condition           other n  n  n
cm      care-team  none          SDV   Condition           other n  n  n
cm      care-team  none          NOPAT Condition           other y  n  n
adm     care-team  none          R     Condition           other n  n  n
adm     care-team  none          V     Condition           other n  n  n
adm     care-team  none          PSY   Condition           other n  n  n
adm     care-team  none          SEX   Condition           other n  n  n
adm     care-team  none          SDV   Condition           other n  n  n
adm     care-team  none          NOPAT Condition           other n  n  n
cn      care-team  none          V     Condition           own   y  y  y
cn      care-team  none          PSY   Condition           own   y  y  y
cn      care-team  none          SDV   Condition           own   y  y  y
ph      care-team  none          V     Condition           own   y  n  n
ph      care-team  none          PSY   Condition           own   y  n  n
ph      care-team  none          SDV   Condition           own   y  n  n
sw      care-team  none          V     Condition           own   y  n  n
sw      care-team  none          PSY   Condition           own   y  n  n
sw      care-team  none          SDV   Condition           own   y  n  n
cm      care-team  none          V     Condition           own   y  n  n
cm      care-team  none          PSY   Condition           own   y  n  n
cm      care-team  none          SDV   Condition           own   y  n  n
gp      registered practice-only -     Condition           other y  y  y
gp      care-team  practice-only -     Condition           other n  y  n
gp      referral   practice-only -     Condition           other n  y  n
gp      registered only-cn       -     Condition           other y  y  y
gp      care-team  only-cn       -     Condition           other n  y  n
gp      referral   only-cn       -     Condition           other n  y  n
gp      registered no-obs        -     Condition           other y  y  y
gp      registered no-obs        -     Observation         other y  y  y
gp      care-team  no-obs        -     Condition           other y  y  y
gp      care-team  no-obs        -     Observation         other n  y  n
gp      referral   no-obs        -     Condition           other y  y  y
gp      referral   no-obs        -     Observation         other n  y  n
gp      registered no-psy        -     Condition           other y  y  y
gp      care-team  no-psy        -     Condition           other y  y  y
gp      referral   no-psy        -     Condition           other y  y  y
gp      care-team  proxy-all     -     Condition           other y  y  y
cn      registered practice-only -     Condition           other y  y  y
cn      care-team  practice-only -     Condition           other n  y  n
cn      referral   practice-only -     Condition           other n  y  n
cn      registered only-cn       -     Condition           other y  y  y
cn      care-team  only-cn       -     Condition           other y  y  y
cn      referral   only-cn       -     Condition           other y  y  y
cn      registered no-obs        -     Condition           other y  y  y
cn      registered no-obs        -     Observation         other y  y  y
cn      care-team  no-obs        -     Condition           other y  y  y
cn      care-team  no-obs        -     Observation         other n  y  n
cn      referral   no-obs        -     Condition           other y  y  y
cn      referral   no-obs        -     Observation         other n  y  n
cn      registered no-psy        -     Condition           other y  y  y
cn      care-team  no-psy        -     Condition           other y  y  y
cn      referral   no-psy        -     Condition           other y  y  y
cn      care-team  proxy-all     -     Condition           other y  y  y
ph      registered practice-only -     Condition           other y  n  n
ph      care-team  practice-only -     Condition           other n  n  n
ph      referral   practice-only -     Condition           other n  n  n
ph      registered only-cn       -     Condition           other y  n  n
ph      care-team  only-cn       -     Condition           other n  n  n
ph      referral   only-cn       -     Condition           other n  n  n
ph      registered no-obs        -     Condition           other y  n  n
ph      registered no-obs        -     Observation         other y  n  n
ph      care-team  no-obs        -     Condition           other y  n  n
ph      care-team  no-obs        -     Observation         other n  n  n
ph      referral   no-obs        -     Condition           other y  n  n
ph      referral   no-obs        -     Observation         other n  n  n
ph      registered no-psy        -     Condition           other y  n  n
ph      care-team  no-psy        -     Condition           other y  n  n
ph      referral   no-psy        -     Condition           other y  n  n
ph      care-team  proxy-all     -     Condition           other y  n  n
sw      registered practice-only -     Condition           other y  n  n
sw      care-team  practice-only -     Condition           other n  n  n
sw      referral   practice-only -     Condition           other n  n  n
sw      registered only-cn       -     Condition           other y  n  n
sw      care-team  only-cn       -     Condition           other n  n  n
sw      referral   only-cn       -     Condition           other n  n  n
sw      registered no-obs        -     Condition           other y  n  n
sw      registered no-obs        -     Observation         other n  n  n
sw      care-team  no-obs        -     Condition           other y  n  n
sw      care-team  no-obs        -     Observation         other n  n  n
sw      referral   no-obs        -     Condition           other y  n  n
sw      referral   no-obs        -     Observation         other n  n  n
sw      registered no-psy        -     Condition           other y  n  n
sw      care-team  no-psy        -     Condition           other y  n  n
sw      referral   no-psy        -     Condition           other y  n  n
sw      care-team  proxy-all     -     Condition           other y  n  n
cm      registered practice-only -     Condition           other y  n  n
cm      care-team  practice-only -     Condition           other n  n  n
cm      referral   practice-only -     Condition           other n  n  n
cm      registered only-cn       -     Condition           other y  n  n
cm      care-team  only-cn       -     Condition           other n  n  n
cm      referral   only-cn       -     Condition           other n  n  n
cm      registered no-obs        -     Condition           other y  n  n
cm      registered no-obs        -     Observation         other y  n  n
cm      care-team  no-obs        -     Condition           other y  n  n
cm      care-team  no-obs        -     Observation         other n  n  n
cm      referral   no-obs        -     Condition           other y  n  n
cm      referral   no-obs        -     Observation         other n  n  n
cm      registered no-psy        -     Condition           other y  n  n
cm      care-team  no-psy        -     Condition           other y  n  n
cm      referral   no-psy        -     Condition           other y  n  n
cm      care-team  proxy-all     -     Condition           other y  n  n
gp      registered no-psy        PSY   Condition           other y  y  y
gp      registered no-psy        PSY   Condition           own   y  y  y
gp      care-team  no-psy        PSY   Condition           other n  y  n
gp      care-team  no-psy        PSY   Condition           own   n  y  n
ph      registered no-psy        PSY   Condition           other n  n  n
ph      registered no-psy        PSY   Condition           own   y  n  n
ph      care-team  no-psy        PSY   Condition           other n  n  n
ph      care-team  no-psy        PSY   Condition           own   n  n  n
sw      registered no-psy        PSY   Condition           other n  n  n
sw      registered no-psy        PSY   Condition           own   y  n  n
sw      care-team  no-psy        PSY   Condition           other n  n  n
sw      care-team  no-psy        PSY   Condition           own   n  n  n
gp      bg         none          -     Condition           other bg bg bg
gp      bg         practice-only -     Condition           other bg bg bg
gp      bg         none          PSY   Condition           other bg bg bg
gp      bg         practice-only PSY   Condition           other bg bg bg
gp      bg         none          SDV   Condition           other n  n  n
gp      bg         practice-only SDV   Condition           other n  n  n
gp      bg         none          V     Condition           other n  n  n
gp      bg         practice-only V     Condition           other n  n  n
cn      bg         none          -     Condition           other bg bg bg
cn      bg         practice-only -     Condition           other bg bg bg
cn      bg         none          PSY   Condition           other bg bg bg
cn      bg         practice-only PSY   Condition           other bg bg bg
cn      bg         none          SDV   Condition           other n  n  n
cn      bg         practice-only SDV   Condition           other n  n  n
cn      bg         none          V     Condition           other n  n  n
cn      bg         practice-only V     Condition           other n  n  n
ph      bg         none          -     Condition           other bg n  n
ph      bg         practice-only -     Condition           other bg n  n
ph      bg         none          PSY   Condition           other bg n  n
ph      bg         practice-only PSY   Condition           other bg n  n
ph      bg         none          SDV   Condition           other n  n  n
ph      bg         practice-only SDV   Condition           other n  n  n
ph      bg         none          V     Condition           other n  n  n
ph      bg         practice-only V     Condition           other n  n  n
sw      bg         none          -     Condition           other bg n  n
sw      bg         practice-only -     Condition           other bg n  n
sw      bg         none          PSY   Condition           other bg n  n
sw      bg         practice-only PSY   Condition           other bg n  n
sw      bg         none          SDV   Condition           other n  n  n
sw      bg         practice-only SDV   Condition           other n  n  n
sw      bg         none          V     Condition           other n  n  n
sw      bg         practice-only V     Condition           other n  n  n
adm     bg         none          -     Condition           other n  n  n
adm     bg         practice-only -     Condition           other n  n  n
adm     bg         none          PSY   Condition           other n  n  n
adm     bg         practice-only PSY   Condition           other n  n  n
adm     bg         none          SDV   Condition           other n  n  n
adm     bg         practice-only SDV   Condition           other n  n  n
adm     bg         none          V     Condition           other n  n  n
adm     bg         practice-only V     Condition           other n  n  n
gp      care-team  none          -     Patient             other y  y  y
gp      care-team  none          -     MedicationRequest   other y  y  y
gp      care-team  none          -     MedicationStatement other y  y  y
gp      care-team  none          -     AllergyIntolerance  other y  y  y
gp      care-team  none          -     AuditEvent          other n  n  n
gp      care-team  none          -     Practitioner        other y  n  n
gp      care-team  none          -     Consent             other y  y  y
gp      care-team  none          -     Basic               other n  n  n
pn      care-team  none          -     Patient             other y  y  y
pn      care-team  none          -     MedicationRequest   other y  n  n
pn      care-team  none          -     MedicationStatement other y  y  y
pn      care-team  none          -     AllergyIntolerance  other y  y  y
pn      care-team  none          -     AuditEvent          other n  n  n
pn      care-team  none          -     Practitioner        other y  n  n
pn      care-team  none          -     Consent             other y  y  y
pn      care-team  none          -     Basic               other n  n  n
cn      care-team  none          -     Patient             other y  n  n
cn      care-team  none          -     MedicationRequest   other y  n  n
cn      care-team  none          -     MedicationStatement other y  y  y
cn      care-team  none          -     AllergyIntolerance  other y  y  y
cn      care-team  none          -     AuditEvent          other n  n  n
cn      care-team  none          -     Practitioner        other y  n  n
cn      care-team  none          -     Consent             other y  n  n
cn      care-team  none          -     Basic               other n  n  n
ph      care-team  none          -     Patient             other y  n  n
ph      care-team  none          -     MedicationRequest   other y  n  n
ph      care-team  none          -     MedicationStatement other y  y  y
ph      care-team  none          -     AllergyIntolerance  other y  n  n
ph      care-team  none          -     AuditEvent          other n  n  n
ph      care-team  none          -     Practitioner        other y  n  n
ph      care-team  none          -     Consent             other y  n  n
ph      care-team  none          -     Basic               other n  n  n
sw      care-team  none          -     Patient             other y  n  n
sw      care-team  none          -     MedicationRequest   other y  n  n
sw      care-team  none          -     MedicationStatement other y  n  n
sw      care-team  none          -     AllergyIntolerance  other y  n  n
sw      care-team  none          -     AuditEvent          other n  n  n
sw      care-team  none          -     Practitioner        other y  n  n
sw      care-team  none          -     Consent             other y  n  n
sw      care-team  none          -     Basic               other n  n  n
cm      care-team  none          -     Patient             other y  n  n
cm      care-team  none          -     MedicationRequest   other y  n  n
cm      care-team  none          -     MedicationStatement other y  n  n
cm      care-team  none          -     AllergyIntolerance  other y  n  n
cm      care-team  none          -     AuditEvent          other n  n  n
cm      care-team  none          -     Practitioner        other y  n  n
cm      care-team  none          -     Consent             other y  y  y
cm      care-team  none          -     Basic               other n  n  n
adm     care-team  none          -     Patient             other y  y  y
adm     care-team  none          -     MedicationRequest   other n  n  n
adm     care-team  none          -     MedicationStatement other n  n  n
adm     care-team  none          -     AllergyIntolerance  other n  n  n
adm     care-team  none          -     AuditEvent          other n  n  n
adm     care-team  none          -     Practitioner        other y  n  n
adm     care-team  none          -     Consent             other n  n  n
adm     care-team  none          -     Basic               other n  n  n
pat     self       none          -     Observation         self  y  y  y
pat     self       none          -     Observation         other y  n  n
pat     self       none          -     Condition           self  y  n  n
pat     self       none          -     Condition           other y  n  n
pat     self       none          -     Goal                self  y  y  y
pat     self       none          -     Goal                other y  n  n
pat     self       none          -     Consent             self  y  y  y
pat     self       none          -     Consent             other y  y  y
pat     self       none          -     AuditEvent          self  y  n  n
pat     self       none          -     AuditEvent          other y  n  n
pat     self       none          -     Task                self  n  n  n
pat     self       none          -     Task                other n  n  n
pat     self       none          -     Practitioner        self  y  n  n
pat     self       none          -     Practitioner        other y  n  n
pat     self       none          -     MedicationRequest   self  y  n  n
pat     self       none          -     MedicationRequest   other y  n  n
pat     other      none          -     Observation         self  n  n  n
pat     other      none          -     Observation         other n  n  n
pat     other      none          -     Condition           self  n  n  n
pat     other      none          -     Condition           other n  n  n
pat     other      none          -     Goal                self  n  n  n
pat     other      none          -     Goal                other n  n  n
pat     other      none          -     Consent             self  n  n  n
pat     other      none          -     Consent             other n  n  n
pat     other      none          -     AuditEvent          self  n  n  n
pat     other      none          -     AuditEvent          other n  n  n
pat     other      none          -     Task                self  n  n  n
pat     other      none          -     Task                other n  n  n
pat     other      none          -     Practitioner        self  y  n  n
pat     other      none          -     Practitioner        other y  n  n
pat     other      none          -     MedicationRequest   self  n  n  n
pat     other      none          -     MedicationRequest   other n  n  n
pat     self       none          R     Condition           other y  n  n
pat     self       none          R     Observation         self  y  y  y
pat     self       none          V     Condition           other n  n  n
pat     self       none          V     Observation         self  n  n  n
pat     self       none          PSY   Condition           other y  n  n
pat     self       none          PSY   Observation         self  y  y  y
pat     self       none          SDV   Condition           other n  n  n
pat     self       none          SDV   Observation         self  n  n  n
pat     self       none          NOPAT Condition           other n  n  n
pat     self       none          NOPAT Observation         self  n  n  n
pat     self       none          HIV   Condition           other y  n  n
pat     self       none          HIV   Observation         self  y  y  y
carer   proxy      proxy-all     -     Observation         other y  n  n
carer   proxy      proxy-all     -     MedicationRequest   other y  n  n
carer   proxy      proxy-all     -     Communication       self  y  y  y
carer   proxy      proxy-all     -     AuditEvent          other n  n  n
carer   proxy      proxy-all     -     RelatedPerson       other n  n  n
carer   proxy      proxy-meds    -     Observation         other n  n  n
carer   proxy      proxy-meds    -     MedicationRequest   other y  n  n
carer   proxy      proxy-meds    -     Communication       self  n  n  n
carer   proxy      proxy-meds    -     AuditEvent          other n  n  n
carer   proxy      proxy-meds    -     RelatedPerson       other n  n  n
carer   proxy      none          -     Observation         other n  n  n
carer   proxy      none          -     MedicationRequest   other n  n  n
carer   proxy      none          -     Communication       self  n  n  n
carer   proxy      none          -     AuditEvent          other n  n  n
carer   proxy      none          -     RelatedPerson       other n  n  n
carer   proxy      practice-only -     Observation         other n  n  n
carer   proxy      practice-only -     MedicationRequest   other n  n  n
carer   proxy      practice-only -     Communication       self  n  n  n
carer   proxy      practice-only -     AuditEvent          other n  n  n
carer   proxy      practice-only -     RelatedPerson       other n  n  n
carer   none       proxy-all     -     Observation         other n  n  n
carer   none       proxy-all     -     MedicationRequest   other n  n  n
carer   none       proxy-all     -     Communication       self  n  n  n
carer   none       proxy-all     -     AuditEvent          other n  n  n
carer   none       proxy-all     -     RelatedPerson       other n  n  n
carer   none       proxy-meds    -     Observation         other n  n  n
carer   none       proxy-meds    -     MedicationRequest   other n  n  n
carer   none       proxy-meds    -     Communication       self  n  n  n
carer   none       proxy-meds    -     AuditEvent          other n  n  n
carer   none       proxy-meds    -     RelatedPerson       other n  n  n
carer   none       none          -     Observation         other n  n  n
carer   none       none          -     MedicationRequest   other n  n  n
carer   none       none          -     Communication       self  n  n  n
carer   none       none          -     AuditEvent          other n  n  n
carer   none       none          -     RelatedPerson       other n  n  n
carer   none       practice-only -     Observation         other n  n  n
carer   none       practice-only -     MedicationRequest   other n  n  n
carer   none       practice-only -     Communication       self  n  n  n
carer   none       practice-only -     AuditEvent          other n  n  n
carer   none       practice-only -     RelatedPerson       other n  n  n
carer   proxy      proxy-all     R     Observation         other n  n  n
carer   proxy      proxy-all     PSY   Observation         other n  n  n
carer   proxy      proxy-all     SDV   Observation         other n  n  n
carer   proxy      proxy-all     NOPAT Observation         other n  n  n
carer   proxy      proxy-all     -     Communication       other y  n  n
carer   proxy      none          -     Practitioner        other y  n  n
sys-net none       none          -     Observation         other y  y  y
sys-net none       none          PSY   Observation         other y  y  y
sys-net none       none          -     AuditEvent          other y  y  y
sys-net none       none          PSY   AuditEvent          other y  y  y
sys-net none       none          -     Patient             other y  y  y
sys-net none       none          PSY   Patient             other y  y  y
sys-net none       practice-only -     Observation         other y  y  y
sys-net none       practice-only PSY   Observation         other y  y  y
sys-net none       practice-only -     AuditEvent          other y  y  y
sys-net none       practice-only PSY   AuditEvent          other y  y  y
sys-net none       practice-only -     Patient             other y  y  y
sys-net none       practice-only PSY   Patient             other y  y  y
sys-net none       no-obs        -     Observation         other y  y  y
sys-net none       no-obs        PSY   Observation         other y  y  y
sys-net none       no-obs        -     AuditEvent          other y  y  y
sys-net none       no-obs        PSY   AuditEvent          other y  y  y
sys-net none       no-obs        -     Patient             other y  y  y
sys-net none       no-obs        PSY   Patient             other y  y  y
po      none       none          -     Observation         other n  n  n
po      none       none          PSY   Observation         other n  n  n
po      none       none          -     AuditEvent          other y  n  n
po      none       none          PSY   AuditEvent          other n  n  n
po      none       none          -     Patient             other y  n  n
po      none       none          PSY   Patient             other n  n  n
po      none       practice-only -     Observation         other n  n  n
po      none       practice-only PSY   Observation         other n  n  n
po      none       practice-only -     AuditEvent          other y  n  n
po      none       practice-only PSY   AuditEvent          other n  n  n
po      none       practice-only -     Patient             other y  n  n
po      none       practice-only PSY   Patient             other n  n  n
po      none       no-obs        -     Observation         other n  n  n
po      none       no-obs        PSY   Observation         other n  n  n
po      none       no-obs        -     AuditEvent          other y  n  n
po      none       no-obs        PSY   AuditEvent          other n  n  n
po      none       no-obs        -     Patient             other y  n  n
po      none       no-obs        PSY   Patient             other n  n  n
sys-a   registered none          -     Observation         other y  y  y
sys-a   care-team  none          -     Observation         other y  y  y
sys-a   none       none          -     Observation         other n  n  n
sys-a   care-team  none          PSY   Observation         own   y  y  y
sys-a   registered practice-only -     Observation         other y  y  y
sys-a   care-team  practice-only -     Observation         other n  y  n
sys-a   none       practice-only -     Observation         other n  n  n
sys-a   care-team  practice-only PSY   Observation         own   n  y  n
"""

RELATIONSHIPS = {"registered": Relationship.REGISTERED, "care-team": Relationship.CARE_TEAM,
                 "referral": Relationship.REFERRAL, "claimed": Relationship.SELF_CLAIMED,
                 "self": Relationship.SELF, "proxy": Relationship.PROXY}
INTERACTIONS = ("read", "create", "update")
NO_PATIENT = {"Practitioner", "Organization", "Medication", "Location"}


def rows() -> list[tuple[str, ...]]:
    out = []
    for line in TABLE.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            cells = tuple(line.split())
            assert len(cells) == 9, line
            out.append(cells)
    return out


def context(who: str, rel: str, consent_name: str) -> AccessContext:
    p = principal(who, break_glass_for="pat-1" if rel == "bg" else None)
    provision = CONSENTS[consent_name]
    parsed = [consents.parse(consent(provision))] if consent_name != "none" else []
    if p.kind is Kind.CARER:
        sharing = consents.for_carer(parsed, p.persons, NOW)  # type: ignore[arg-type]
    elif p.kind in (Kind.STAFF, Kind.SYSTEM):
        sharing = consents.for_staff(parsed, p.references, NOW)  # type: ignore[arg-type]
    else:
        sharing = consents.EVERYTHING
    found = frozenset({RELATIONSHIPS[rel]}) if rel in RELATIONSHIPS else frozenset()
    return AccessContext(p, NOW, facts={"pat-1": PatientFacts(found, sharing)})


def meta(who: str, rel: str, label: str, type_: str, author: str) -> ResourceMeta:
    p = principal(who)
    patient = None if type_ in NO_PATIENT else ("pat-2" if rel == "other" else "pat-1")
    source = {"own": p.organizations[0] if p.organizations else None, "other": HOSPITAL,
              "self": p.user}[author]
    return ResourceMeta(patient, frozenset({LABELS[label]}) if label != "-" else frozenset(),
                        source)


def test_the_table_is_large_and_unique() -> None:
    keys = [r[:6] for r in rows()]
    assert len(keys) == len(set(keys))
    assert len(keys) * len(INTERACTIONS) > 1000


@pytest.mark.parametrize("row", rows(), ids=lambda r: "-".join(r[:6]))
def test_cell(row: tuple[str, ...]) -> None:
    who, rel, consent_name, label, type_, author, *expected = row
    ctx = context(who, rel, consent_name)
    resource = meta(who, rel, label, type_, author)
    got = []
    for interaction in INTERACTIONS:
        decision = decide(ctx, interaction, type_, resource)
        assert decision.reason, decision
        assert not (decision.break_glass and not decision.allowed), decision
        got.append("bg" if decision.break_glass else "y" if decision.allowed else "n")
    assert got == expected, [decide(ctx, i, type_, resource).reason for i in INTERACTIONS]
