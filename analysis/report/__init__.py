"""The offline HTML report and exports (JSON, npz, HTML, PNG). Imports figures and everything below."""
