"""RG-VLM's report section (its ``report_section`` declaration): one labelled window drawn with
the model's scores and turn-1 analysis beside it, and the link to the browser page."""

from __future__ import annotations

from rayrg.rewards.declarations import ReportInput


def report_section(step: ReportInput) -> str:
    from rayrg.rewards.report import label_rows

    labels_dir, windows_dir = step.side_outputs.get("labels"), step.side_outputs.get("windows")
    if labels_dir is None or windows_dir is None:
        return ""
    labels = label_rows(labels_dir)
    if not labels:
        return ""
    browse = (f"[Browse every labelled window]({step.browser_page}) (`rayrg browse {step.path}`)"
              if step.browser_page else f"`rayrg browse {step.path}` pages through every labelled window.")
    scored = [r for r in labels if r.get("status") == "ok" and r.get("scores")]
    if not scored:
        return f"## A labelled window\n\nNo window was labelled successfully.\n\n{browse}\n"
    row = max(scored, key=lambda r: (len(r["scores"]), r["window_id"]))
    from rayrg.windows.preview import write_preview

    text = f"scores: {row['scores']}\n\nturn 1 (analysis):\n{(row.get('turn1_text') or '')[:900]}"
    write_preview(windows_dir, step.report_dir / "window_scores.png", window_id=row["window_id"], text=text)
    return "\n".join(["## A labelled window", "", f"Model `{row.get('model')}` ({row.get('backend')}), "
                      f"window `{row['window_id']}`.", "", "![window with scores](window_scores.png)", "",
                      browse, ""])
