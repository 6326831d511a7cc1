"""`siteclient serve-files`: the FileService app, its composition root, the inbox, transfer
receipts and the ledger view it authenticates against."""
