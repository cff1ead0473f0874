"""The dashboard's own files: page templates (string.Template) and static assets, served
from the package so the pages read offline."""
