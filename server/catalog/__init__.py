"""Questionnaires: XLSForm upload, versions, publishing, attachments, keys, OpenRosa."""
