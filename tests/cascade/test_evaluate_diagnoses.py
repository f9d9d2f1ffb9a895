"""`medseg evaluate` of a cascade's referral against diagnoses: several true classes share one decision."""

import json

from medseg.cli import main

# case: (diagnosis, the cascade's probability of "fluid"); threshold 0.5
CASES = {
    "cnv1": ("CNV", 0.9), "cnv2": ("CNV", 0.8), "dme1": ("DME", 0.7), "dme2": ("DME", 0.3),
    "drusen1": ("DRUSEN", 0.6), "drusen2": ("DRUSEN", 0.1), "normal1": ("NORMAL", 0.2), "normal2": ("NORMAL", 0.05),
}


def _write(tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    rows = "".join(f"{c},{p},0.5,{'fluid' if p >= 0.5 else 'no_fluid'}\n" for c, (_, p) in CASES.items())
    (pred / "classification.csv").write_text("case,probability_fluid,threshold,decision\n" + rows)
    truth = tmp_path / "diagnoses.csv"
    truth.write_text("case,class\n" + "".join(f"{c},{d}\n" for c, (d, _) in CASES.items()))
    return pred, truth


def test_diagnoses_counted_as_the_positive_class(tmp_path, capsys):
    pred, truth = _write(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", str(pred), str(truth), "--positive", "CNV", "--positive", "DME", "--out", str(out),
                 "--bootstrap", "50"]) == 0
    metrics = json.loads((out / "classification_metrics.json").read_text())
    assert metrics["positives"] == 4 and metrics["positive_true_classes"] == ["CNV", "DME"]
    assert metrics["sensitivity"] == 0.75 and metrics["specificity"] == 0.75  # dme2 missed, drusen1 referred
    assert metrics["confusion_matrix"] == [[3, 1], [1, 3]]
    by_class = metrics["by_true_class"]
    assert {k: v["decided_positive"] for k, v in by_class.items()} == {"CNV": 2, "DME": 1, "DRUSEN": 1, "NORMAL": 0}
    assert by_class["DME"]["share_positive"] == 0.5
    assert "CNV 2/2; DME 1/2; DRUSEN 1/2; NORMAL 0/2" in capsys.readouterr().err


def test_several_true_classes_need_positive_and_it_must_exist(tmp_path, capsys):
    pred, truth = _write(tmp_path)
    assert main(["evaluate", str(pred), str(truth), "--out", str(tmp_path / "e1")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "more than one true class besides 'fluid'" in err and "--positive CNV" in err
    assert main(["evaluate", str(pred), str(truth), "--positive", "AMD", "--out", str(tmp_path / "e2")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "--positive AMD: no case has this true class" in err and "diagnoses.csv" in err
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()
