"""The training log and its curves (bench/train/log.py)."""

from __future__ import annotations

from bench.train.log import LOG_NAME, write_curves


def test_curves_png_from_a_log(tmp_path):
    log = tmp_path / LOG_NAME
    log.write_text("iteration,phase,images,loss,pixel_accuracy,mean_accuracy,mean_iou,fw_iou,"
                   "lr,elapsed_s,images_per_s\n1,train,1,5.0,,,,,1e-10,1.0,2.0\n"
                   "2,val,3,4.0,0.5,0.4,0.3,0.45,1e-10,2.0,\n")
    write_curves(log, tmp_path / "curves.png", "test")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
