import dcn_keras
from dcn_keras.studies import macs
from tests.helpers import preset_model


def test_multiply_adds_match_a_hand_count_for_the_paper_preset():
    counts = macs.model_macs(preset_model(top_pass="full"))
    coarse = 47 * 47 * 12 * 7 * 7 * 1 + 23 * 23 * 24 * 3 * 3 * 12
    top = 10 * 10 * 96 * 4 * 4 * 24 + 96 * 10
    patch = (12 * 12 * 24 * 9 * 1 + 12 * 12 * 24 * 9 * 24 + 2 * 6 * 6 * 24 * 9 * 24
             + 1 * 1 * 24 * 9 * 24)
    # Fine model: the fine tower on the 102x102 zero-padded image.
    whole = (100 * 100 * 24 * 9 + 100 * 100 * 24 * 9 * 24 + 2 * 50 * 50 * 24 * 9 * 24
             + 23 * 23 * 24 * 9 * 24)
    assert counts["parts"] == {"coarse_tower": coarse, "top": top, "saliency": top, "refined_top": top,
                              "fine_patch": patch, "fine_pass": 8 * patch, "fine_whole": whole}
    assert counts["dcn"] == coarse + 3 * top + 8 * patch == 22_980_396
    assert counts["fine"] == whole + top == 86_349_696
    assert round(counts["fine"] / counts["dcn"], 2) == 3.76


def test_incremental_top_pass_counts_the_taps_each_refined_cell_reaches():
    counts = macs.model_macs(preset_model())  # top_pass="incremental", the default
    # Each of the 8 cells reaches 2 x 2 outputs of the 4x4 stride-2 conv
    # (24 x 96 taps each); then the dense logits.
    refined = 8 * 2 * 2 * 24 * 96 + 96 * 10
    assert counts["parts"]["refined_top"] == refined
    top = counts["parts"]["top"]
    assert counts["dcn"] == 22_980_396 - top + refined == 19_367_724
    assert round(counts["fine"] / counts["dcn"], 2) == 4.46


def test_cam_saliency_counts_its_weighted_sums_not_a_backward_pass():
    counts = macs.model_macs(preset_model(saliency="cam"))
    # Class weights (10 x 96), a 96-term sum at each of the 10 x 10 positions, and
    # each of the 23 x 23 cells' window sum over its 2 x 2 positions.
    assert counts["parts"]["saliency"] == 10 * 96 + 10 * 10 * 96 + 23 * 23 * 4
    assert counts["dcn"] == 19_367_724 - counts["parts"]["top"] + counts["parts"]["saliency"]


def test_multi_head_top_counts_every_head():
    from dcn_keras.models import DynamicCapacityNetwork

    model = DynamicCapacityNetwork.from_preset("svhn")
    top = macs.model_macs(model)["parts"]["top"]
    assert top == 6 * 6 * 96 * 9 * 48 + 96 * 192 + 192 * 6 + 5 * 192 * 11


def test_a_fine_pass_per_block_counts_its_windows():
    dcn = dcn_keras.DynamicCapacityNetwork.from_preset("svhn_reader", image_shape=(96, 96, 3), num_patches=24,
                                                      fine_tile=3)
    # The 22x22 window of a 3x3 block: valid 3x3 convolutions on 3 then 48
    # channels, a 2x2 pool, a 3x3 one and a stride-2 3x3 one.
    window = 20 * 20 * 48 * 9 * 3 + 18 * 18 * 48 * 9 * 48 + 7 * 7 * 48 * 9 * 48 + 3 * 3 * 48 * 9 * 48
    patch = macs.model_macs(dcn)["parts"]["fine_patch"]
    bound = macs.model_macs(dcn)  # No window count: k patches, the most it can cost.
    assert bound["parts"]["fine_pass"] == 24 * patch
    counted = macs.model_macs(dcn, windows_per_image=5.5)
    assert counted["parts"]["fine_pass"] == round(5.5 * window)
    assert counted["dcn"] - bound["dcn"] == round(5.5 * window) - 24 * patch
