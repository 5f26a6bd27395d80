"""A tqdm that draws into a Streamlit progress bar (for the hub download of timm weights)."""

from __future__ import annotations

import io

from tqdm.auto import tqdm


def streamlit_bar(placeholder) -> type[tqdm]:
    """A tqdm class whose bars draw into ``placeholder`` (an ``st.empty()``), bytes shown in MB."""

    class StreamlitBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)  # huggingface_hub's own keyword
            kwargs["file"] = io.StringIO()  # the server's terminal stays quiet
            kwargs["mininterval"] = 0.2
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            total = self.total or 0
            done = min(self.n / total, 1.0) if total else 0.0
            size = f"{self.n / 1e6:.0f} of {total / 1e6:.0f} MB" if total else f"{self.n / 1e6:.0f} MB"
            placeholder.progress(done, text=f"Downloading {self.desc or 'the weights'}: {size}")
            return True

    return StreamlitBar
