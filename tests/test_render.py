"""HTML and figures: escaping, frame states, pLDDT bands, the sandboxed 3D iframe."""
from __future__ import annotations

import html
import re

import pytest

from sedd import render
from sedd.render import DESIGNED, FIXED, MASKED, NEW


def test_frame_html_marks_each_state_and_counts():
    out = render.frame_html(["MK_A", "MKGA"], [FIXED + FIXED + MASKED + NEW, FIXED + FIXED + NEW + DESIGNED],
                            step=3, steps=16, nfe=5)
    rows = out.split('class="frame-legend"')[0]
    assert '<span class="res-fixed">MK</span><span class="res-masked">_</span><span class="res-new">A</span>' in rows
    assert '<span class="res-new">G</span><span class="res-designed">A</span>' in rows
    assert "step 3 / 16" in out and "network evaluations 5 (2.5 per design)" in out
    assert "1 position still masked" in out


def test_user_text_is_escaped_everywhere():
    evil = '<script>alert("x")</script>'
    assert "<script>" not in render.message_html(evil)
    assert html.escape(evil) in render.message_html(evil)
    assert "<script>" not in render.frame_html([evil], [FIXED * len(evil)], 0, 16, 0, note=evil)
    page = render.structure_html("ATOM\n", [50.0], [True], title=evil)
    assert "<script>alert" not in page.split("srcdoc=")[0]


@pytest.mark.parametrize("value, color", [(95, "#0053d6"), (90, "#0053d6"), (89.9, "#65cbf3"), (70, "#65cbf3"),
                                          (69, "#ffdb13"), (50, "#ffdb13"), (49.9, "#ff7d45"), (0, "#ff7d45")])
def test_plddt_bands(value, color):
    assert render.plddt_color(value) == color


PDB = "".join(f"ATOM  {i:5d}  CA  ALA A{i:4d}    {i * 3.8:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00{p:6.2f}           C\n"
              for i, p in zip(range(1, 5), (95, 75, 55, 20)))


def test_viewer_page_colours_residues_by_band_and_by_design():
    page = render.viewer_page(PDB, [95, 75, 55, 20], [False, True, True, False], js_url="local/3Dmol-min.js")
    assert "local/3Dmol-min.js" in page
    for resi, color in ((1, "#0053d6"), (2, "#65cbf3"), (3, "#ffdb13"), (4, "#ff7d45")):
        assert re.search(rf'setStyle\(\{{"resi": \[{resi}\]\}},\{{"cartoon": \{{"color": "{color}"', page)
    designed = render.viewer_page(PDB, [95, 75, 55, 20], [False, True, True, False], color_by="designed")
    assert '{"resi": [2, 3]},{"cartoon": {"color": "#e4572e"' in designed
    assert '{"resi": [1, 4]},{"cartoon": {"color": "#b8c4cc"' in designed


def test_structure_is_a_sandboxed_srcdoc_iframe_with_a_legend():
    out = render.structure_html(PDB, [95, 75, 55, 20], [False, True, True, False], "design_1")
    assert re.search(r'<iframe[^>]+sandbox="allow-scripts"[^>]+srcdoc="', out)
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', out).group(1))
    assert "$3Dmol.createViewer" in srcdoc and "ALA" in srcdoc
    assert all(html.escape(label) in out for _, _, label in render.PLDDT_BANDS)


def test_markup_in_a_pdb_never_reaches_the_page():
    bad = PDB + "REMARK </script><script>alert(1)</script>\nATOM  </script>\n"
    page = render.viewer_page(bad, [95, 75, 55, 20], [False] * 4)
    clean = render.viewer_page(PDB, [95, 75, 55, 20], [False] * 4)
    assert "alert(1)" not in page and page.count("</script>") == clean.count("</script>")


def test_plddt_figure_marks_designed_positions():
    fig = render.plddt_figure([95, 75, 55, 20], [False, True, True, False])
    ax = fig.axes[0]
    assert ax.get_ylim() == (0, 100)
    [points] = [c for c in ax.collections if c.get_label() == "designed position"]
    assert points.get_offsets()[:, 0].tolist() == [2, 3]


def test_the_scan_heatmap_shades_gains_and_losses_on_one_scale():
    """A tiny gain must look nearly neutral next to a large loss, not as deep a blue as the loss is red."""
    sequence = "MKV"
    scores = [[0.0 if r == wt else -8.0 for r in "ACDEFGHIKLMNPQRSTVWY"] for wt in sequence]
    scores[1][0] = 0.01                                           # K2A: barely tolerated
    entry = {"sequence": sequence, "scan": {"residues": "ACDEFGHIKLMNPQRSTVWY", "scores": scores}}
    image = render.scan_heatmap_figure(entry).axes[0].images[0]
    assert image.norm(0.01) == pytest.approx(0.5, abs=0.01)        # the middle of the colour map: pale
    assert image.norm(-8.0) == pytest.approx(0.0) and image.norm(0.0) == pytest.approx(0.5)


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _legend(fig):
    return next(leg for leg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if leg is not None)


@pytest.mark.parametrize("figure", [
    lambda: render.plddt_figure([30.0] * 60 + [95.0] * 4, [False] * 60 + [True] * 4),
    lambda: render.score_track_figure([-1.0] * 56 + [-8.0] * 8, [False] * 60 + [True] * 4)],
    ids=["plddt", "track"])
def test_a_legend_never_hides_the_data(figure):
    """The legend sat in the lower right corner of the axes, over the curve or the bars drawn there."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = figure()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    assert not _overlap(_legend(fig).get_window_extent(renderer), ax.get_window_extent(renderer))


def test_the_plddt_plot_is_titled_and_ticked_at_its_band_boundaries():
    """The page's block label floated over the plot's top left corner; the title is now the figure's own."""
    ax = render.plddt_figure([95, 75, 55, 20], [False, True, True, False]).axes[0]
    assert "pLDDT" in ax.get_title()
    assert {50, 70, 90} <= set(ax.get_yticks())


def test_the_track_and_the_heatmap_put_each_position_at_the_same_x():
    """Drawn one above the other at the same width: position 30 must sit at the same x in both
    (the heatmap's colour bar made its axes narrower, so positions drifted apart along the sequence)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    L = 65
    track = render.score_track_figure([-1.0] * L, [True] * L)
    entry = {"sequence": "A" * L, "scan": {"residues": "ACDEFGHIKLMNPQRSTVWY", "scores": [[0.0] * 20] * L}}
    heat = render.scan_heatmap_figure(entry, [True] * L)
    assert tuple(track.get_size_inches())[0] == tuple(heat.get_size_inches())[0]
    for fig in (track, heat):
        FigureCanvasAgg(fig).draw()
    a, b = track.axes[0], heat.axes[0]
    assert a.get_xlim() == b.get_xlim()
    assert a.get_position().x0 == pytest.approx(b.get_position().x0, abs=1e-3)
    assert a.get_position().x1 == pytest.approx(b.get_position().x1, abs=1e-3)


def test_wild_type_dots_stand_out_on_the_darkest_cells():
    """Black dots on the map's darkest red were invisible: each has a white rim."""
    from matplotlib.colors import to_rgba
    entry = {"sequence": "MKV", "scan": {"residues": "ACDEFGHIKLMNPQRSTVWY", "scores": [[-8.0] * 20] * 3}}
    [dots] = [c for c in render.scan_heatmap_figure(entry).axes[0].collections if c.get_label() == "wild type"]
    assert tuple(dots.get_edgecolor()[0]) == to_rgba("white") and dots.get_linewidth()[0] > 0


def test_the_frame_legend_keeps_each_entry_on_one_line():
    legend = render.frame_html(["MK_A"], [FIXED + FIXED + MASKED + NEW], 1, 16, 1).split('class="frame-legend">')[1]
    assert legend.count('class="legend-item"') == 4


@pytest.mark.parametrize("n", [1, 20])
@pytest.mark.parametrize("figure", [
    lambda n: render.plddt_figure([50.0] * n, [True] * n),
    lambda n: render.score_track_figure([-1.0] * n),
    lambda n: render.scan_heatmap_figure({"sequence": "A" * n, "scan": {"residues": "ACDEFGHIKLMNPQRSTVWY",
                                                                        "scores": [[0.0] * 20] * n}})],
    ids=["plddt", "track", "heatmap"])
def test_positions_are_ticked_at_whole_numbers(figure, n):
    """A 20-residue sequence was ticked at positions 2.5, 7.5, 12.5 …, a one-residue one at 0.6, 0.8, …"""
    ax = figure(n).axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize("value", [float("nan"), -0.5])
def test_a_confidence_outside_the_bands_is_drawn_in_the_lowest_band(value):
    very_low = render.PLDDT_BANDS[-1][1]
    assert render.plddt_color(value) == very_low
    page = render.viewer_page("ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00 50.00           C\nEND\n",
                              [value], [True])
    assert very_low in page


def test_the_span_posterior_chart_gives_each_probability_its_error():
    """A probability that moves by ±0.1 with the seed read "0.54", as if exact."""
    top = [{"lengths": [8], "prob": 0.54, "stderr": 0.104}, {"lengths": [7], "prob": 0.2, "stderr": 0.061},
           {"lengths": [3], "prob": 0.001, "stderr": 0.0}]
    chart = render.span_posterior_html(top, "enumeration")
    assert re.findall(r'span-prob">([^<]+)<', chart) == ["0.54 ± 0.10", "0.20 ± 0.061", "0.001"]
    assert "± its Monte Carlo error" in chart
    assert "±" not in render.span_posterior_html([{"lengths": [8], "prob": 0.54}], "enumeration")


def test_the_span_posterior_chart_tells_small_probabilities_apart():
    """With several spans every combination is a percent or less: the bars were all the same sliver
    and every probability read 0.01."""
    top = [{"lengths": [0, 2, 2, 3, 3], "prob": 0.012}, {"lengths": [1, 2, 2, 3, 3], "prob": 0.006},
           {"lengths": [3, 3, 3, 3, 3], "prob": 2.1e-5}]
    chart = render.span_posterior_html(top, "exact")
    widths = [float(w) for w in re.findall(r'span-bar" style="width:([0-9.]+)%', chart)]
    assert widths == [60.0, 30.0, 0.5]
    assert re.findall(r'span-prob">([^<]+)<', chart) == ["0.012", "0.006", "2.1e-05"]
