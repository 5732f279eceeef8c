"""Custody of enrollment-group keys: where they live and how device keys are derived from them.

`ports` is what the service layer depends on; `sealed` keeps keys sealed in the database (the default);
`pkcs11` keeps them in a PKCS#11 token (an HSM, or SoftHSM2 in tests) as non-extractable secrets and
derives device keys inside it. The master sealing key can live in the token too (`pkcs11.Pkcs11Sealer`).
"""
