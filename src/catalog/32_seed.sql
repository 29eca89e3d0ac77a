-- Built-in rows, inserted before the catalog's triggers exist (so that
-- installing writes no audit rows, and a restored dump's audit trail starts
-- where the original did).
--
-- Administrators and auditors act for every organization.
INSERT INTO @extschema@.organization_member (role_name, organization_id) VALUES
	('backup_offline_admin', NULL), ('backup_offline_auditor', NULL);

-- Built-in compliance rules (organization_id NULL: shared by every
-- organization).  Each cites its source; administrators add their own rules
-- or organization-specific ones with stricter terms.

INSERT INTO @extschema@.compliance_rule
	(regulation, name, jurisdiction, minimum_retention, retention_anchor, until_subject_age,
	 requires_encryption, requires_audit_log, requires_integrity_check, source_citation, source_url, notes,
	 built_in)
VALUES
	('HIPAA', 'HIPAA Security Rule documentation retention', 'US-FEDERAL', '6 years',
	 'date of creation or the date it last was in effect, whichever is later', NULL,
	 true, true, true,
	 '45 CFR 164.316(b)(2)(i)', 'https://www.ecfr.gov/current/title-45/section-164.316',
	 'Encryption (164.312(a)(2)(iv)), audit controls (164.312(b)) and integrity (164.312(c)(1)) are Security Rule safeguards; backup_offline requires all three for HIPAA-scoped backups.',
	 true),
	('IRS', 'IRS employment tax records', 'US-FEDERAL', '4 years',
	 'date the tax becomes due or is paid, whichever is later', NULL,
	 false, false, false,
	 'IRS Publication 15 (Circular E), Recordkeeping', 'https://www.irs.gov/publications/p15',
	 'Keep all records of employment taxes for at least 4 years.',
	 true),
	('TEXAS', 'Texas HHSC community services provider records', 'US-TX', '7 years',
	 'date of the claim for the service', 21,
	 false, false, false,
	 '26 TAC §52.113', 'https://texreg.sos.state.tx.us/',
	 'Records are kept 7 years after the claim or until the individual reaches age 21, whichever is later.',
	 true),
	('FLORIDA', 'Florida Medicaid provider records', 'US-FL', '5 years',
	 'date of service', NULL,
	 false, false, false,
	 'Fla. Admin. Code R. 59G-1.054 (Recordkeeping and Documentation Requirements); ss. 409.907(3)(c) and 409.913, F.S.',
	 'https://www.flrules.org/gateway/ruleNo.asp?id=59G-1.054',
	 'Florida Medicaid providers retain medical, professional, financial and business records of services and goods furnished to recipients for five years from the date of service.',
	 true);
