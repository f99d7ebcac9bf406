"""Artifacts of the shipped checkpoints are byte-identical to the pinned ones.

The hashes below were produced on branch h-dispatch BEFORE the dispatch/rewrite/enum refactor
(commit e82f332 of main), with, for every ``examples/checkpoints/NAME.pt``::

    spikec compile NAME.pt --target loihi2 --ssa host|decompose -o NAME-host|NAME-decompose
    spikec compile NAME.pt --target nir --ssa host|decompose -o NAME-nir-host|NAME-nir-decompose
    spikec compile NAME.pt --target onnx -o NAME-onnx

run in the repository root (the graph's meta records the checkpoint path as given) and
``sha256sum`` of every file written (no ``--data``/``--calib``: the result does not depend on
float summation order). V1's NIR export is refused (a transpose outside attention), so it has no
NIR rows. A change that alters an artifact on purpose (a new header field, a checksum) re-pins
them: rerun the commands above and paste the new hashes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytest.importorskip("torch")

from spikec.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PINNED: dict[str, dict[str, str]] = {
    "spikformer_v1_fmnist-decompose": {
        "compiled.spkc":
            "9f1b6b36d328838660c30ce8f6bf3efcbdc509f820879dc4d2c6a829eb3aa031",
        "float.spkc":
            "b098c03f3a477ea70a4d19f1441389d62a604f87b6150c598c765a7995b26c4a",
        "folded.spkc":
            "d5dde36dd554b3e73ec9b97cfffc22cf0cda24f49bf76514724e586a207091b4",
        "lava/README.md":
            "495a4a88a471e1896646b94631bbb491f9344082ec7523918b2359d83919a5da",
        "lava/manifest.json":
            "f68d80432b9bccec30f280df951ea73f0293d152b4f6d56147e450ada67f8b22",
        "lava/network.json":
            "a6b245c068f0d53531577b21ca4f630912008c939646d95b81c1be523011e9ee",
        "lava/network.npz":
            "e9f9279763ca9e6a03d7c601e8628b365b237225a97a583af8f0398692fa0cfa",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "4ba52eb3288b7e8aaff36d706a0618c6d0a14181611cb39dfb2d4e02cfc8f872",
    },
    "spikformer_v1_fmnist-host": {
        "compiled.spkc":
            "9f1b6b36d328838660c30ce8f6bf3efcbdc509f820879dc4d2c6a829eb3aa031",
        "float.spkc":
            "b098c03f3a477ea70a4d19f1441389d62a604f87b6150c598c765a7995b26c4a",
        "folded.spkc":
            "d5dde36dd554b3e73ec9b97cfffc22cf0cda24f49bf76514724e586a207091b4",
        "lava/README.md":
            "aa6315a68b59466d8901751c967e93d170c42fb7d6e22949f37f90a320711961",
        "lava/manifest.json":
            "ace1c6adcec74c3fae7466ddca4570e08f4da755b00cdfc0a37ce5be9df19ddb",
        "lava/network.json":
            "1bb7381908899a8d9d152badbdc45e6a0adef36bc32ed25ad0ce002a18a3c2ab",
        "lava/network.npz":
            "78047473e5b9394f79a4259c5562db2f359b28f737bb5bdbfd39ab4b120558d8",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "1e954d84dea80328e55dd6ec418c8d49e9f5eff1e28edc595160e451d828e7a1",
    },
    "spikformer_v1_fmnist-onnx": {
        "export.json":
            "2619f3d62f31060293e0c519a068cd55624c59425b15ba88f190769350fa8534",
        "model.onnx":
            "d2f9198b43dd20ead5b3bc4f3d7a9154e46b592301963b8f1c3eefce2b70da30",
    },
    "spikformer_v2_fmnist-decompose": {
        "compiled.spkc":
            "bafbabc5886b45d59db2086fc127c07108ff352af74b088a96fdd609c1cd87f2",
        "float.spkc":
            "61a9d52a610890b255498e19a4f37d117f7388e53cd828c0144807de710323f6",
        "folded.spkc":
            "85203097dc7909f3e01d8eff3df1bde0725de51f5bd38c7cbc720c6377273331",
        "lava/README.md":
            "af6c35ccd2f2759a2bf496f19fa86d9437aff044d9adffbb7645969700f001ef",
        "lava/manifest.json":
            "687b889cd29a832b6f0680047038152d742b12bf15d6a9a90d7c076091ebd3e8",
        "lava/network.json":
            "480da02d30154101dc2beb107060f79bc5768f8f89c973c1e4c825beba77e029",
        "lava/network.npz":
            "c317f20026547a489a92c33663ea79ad6282e808ba97f2e0e0d8f8b89449c1ec",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "28d86fd48996b964c517443e68d3029ab1777fe040a47b36f86783215f3910d4",
    },
    "spikformer_v2_fmnist-host": {
        "compiled.spkc":
            "bafbabc5886b45d59db2086fc127c07108ff352af74b088a96fdd609c1cd87f2",
        "float.spkc":
            "61a9d52a610890b255498e19a4f37d117f7388e53cd828c0144807de710323f6",
        "folded.spkc":
            "85203097dc7909f3e01d8eff3df1bde0725de51f5bd38c7cbc720c6377273331",
        "lava/README.md":
            "0649b22bc6f4f959c2c73fd80d18639674c4f08f17eb403369e6aff7906e9bda",
        "lava/manifest.json":
            "268ee5a88ec41da654921a95f8dacceba8c5e22219f6c2829ab1c69dc0fbb83e",
        "lava/network.json":
            "f63f6e2ba65318ae3f2449ccca509f2aa5da097eacc78714017f8a6d3bb3b997",
        "lava/network.npz":
            "cf71c2a9180cdf519a9146185f689a4fe99b83bac0913b7d9e5adfdead29fbbe",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "fe42efb75f9712ce820d074634ce9d7ed4e86d1ad5280fd395c06ca110dcf7e6",
    },
    "spikformer_v2_fmnist-nir-decompose": {
        "export.json":
            "7934cb5d38391bead2d46c8c53c4e1addfc8a2a6bb0386fbb6561f13ebd2d838",
        "model.nir":
            "003983f6e30aac8a60db00abb09139c00de0974f00ef156a78880b0e4c25b8d1",
    },
    "spikformer_v2_fmnist-nir-host": {
        "export.json":
            "ee9ac689575bbc537197963cf9227fe3997850915268f2f8455d83f36b952e57",
        "model.nir":
            "7d33b7fb3feb97d6af80b720d15b11c555fba9647c03d8e2feaf481e6f2ab974",
    },
    "spikformer_v2_fmnist-onnx": {
        "export.json":
            "c36a9434329a3cb0a3aa32e32787be9a1fcd5ef11f1cdcf5eb1495247ed87949",
        "model.onnx":
            "80775309a97b24cb2c0e0683fb9a03ac6ee5d32e0f79f3b19f82ff2df5771d79",
    },
    "spikformer_v2_fmnist_iand-decompose": {
        "compiled.spkc":
            "8a313ac363781667612134680c9a69d5a399045ef528f38a358f199748374c95",
        "float.spkc":
            "3d347861f3c7324e411a8090257d7c9160b1f7043f246662aad80606e67c4633",
        "folded.spkc":
            "f27a5ecc78f444d56104b594ae28835a04459a562244cb8081ebe06552299898",
        "lava/README.md":
            "2b23933761b5db32723be86844c83038153908b33c01ab4d405e645e14b34a0a",
        "lava/manifest.json":
            "07533b9b716d1dd0ed1dcd5d7429945126971daf52f7dc56688a53129d5f370d",
        "lava/network.json":
            "2a85a08632dbdbd3d6d9fce4c4f5b0e4539abde60729c2415cba3c2ce91c8dde",
        "lava/network.npz":
            "ccace96e04e43e3901cea7347ed0b93e97120ae118ff826614e9196a05e1fbb6",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "866193fabee09b43e4ff742ffaa3616e4904b2f1c040576610da8d6966b1f937",
    },
    "spikformer_v2_fmnist_iand-host": {
        "compiled.spkc":
            "8a313ac363781667612134680c9a69d5a399045ef528f38a358f199748374c95",
        "float.spkc":
            "3d347861f3c7324e411a8090257d7c9160b1f7043f246662aad80606e67c4633",
        "folded.spkc":
            "f27a5ecc78f444d56104b594ae28835a04459a562244cb8081ebe06552299898",
        "lava/README.md":
            "5ea5b850b562c5a4ca65ba934fd2ce62bcde30821e0abf7ea53c200e8b28169c",
        "lava/manifest.json":
            "96dfda3718b5a9bf684f101540d51f80773d94bbb41a3d0b6c12e95d6a03d118",
        "lava/network.json":
            "3c29cc6f01b2f00592fc20317b8491c83649cf41fd7e2923071e552bf761f492",
        "lava/network.npz":
            "5f10e37ce812ae3c6b8582372188e9af2fd8e81bdc235c226724a91f8012a5e2",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "d5cbae8c1c5241daab20c616276588fc79dc2b9a8f87aeaf8d42a2420c690223",
    },
    "spikformer_v2_fmnist_iand-nir-decompose": {
        "export.json":
            "d7c1b7af8647e3219da76bd499b73c3456b0eb33690da7550b6391c5913f3737",
        "model.nir":
            "ccaac5c2fa2d5b178ca086fb1ebdaa9350a541f170b25c9140987fe823b5f341",
    },
    "spikformer_v2_fmnist_iand-nir-host": {
        "export.json":
            "477e2bb14c60b0a46945c7bd0a7592ce1fdacf85040fa7c03e3c1e9359439f1b",
        "model.nir":
            "fa6f3b035d682d83c9a7968db10d0be44f8e05a9398438071efce4defd50868d",
    },
    "spikformer_v2_fmnist_iand-onnx": {
        "export.json":
            "fd2bd56b5bd4f0da31ace1ebceecad2f94f616d0da20ff976c548ac9699cc9b5",
        "model.onnx":
            "4d43de7db8faf9bb79571551dfe26fe4473d0b81c8bc08e5a21bbac3d45219c1",
    },
    "spikformer_v2_mnist5k-decompose": {
        "compiled.spkc":
            "3c5cd3bffa1a891b2d3b22feb93df14a98316dddd5e85f6f4bb3983b54ec2c4b",
        "float.spkc":
            "633ed37b6884b53447f0a90802dabbfb610798215801e8aa14eb1c3cffa064a6",
        "folded.spkc":
            "2120d97718645a6d504c667eb078967aec39c4341734315e41d0943606024fa8",
        "lava/README.md":
            "59c0a1a6abb145f1b425116d9bfed21605e8ffac5e96a3c9149f9d7c9344c26b",
        "lava/manifest.json":
            "cd7725401ce90cc9c09e71ff2059c043ffce2f5419b3e05014807f738123fa7c",
        "lava/network.json":
            "c34d7e593290995864859edfe9fd9c9c9b26e9ebfe8e6cb206351b5096273d8c",
        "lava/network.npz":
            "ff74f1de7ac9a1db6e9b42db1cc093101e6a4194a33318331394f51bb9629c5d",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "0be423b97843f6817f68993e95894001ece62d9d351e78ccdfddcfae3fd122cd",
    },
    "spikformer_v2_mnist5k-host": {
        "compiled.spkc":
            "3c5cd3bffa1a891b2d3b22feb93df14a98316dddd5e85f6f4bb3983b54ec2c4b",
        "float.spkc":
            "633ed37b6884b53447f0a90802dabbfb610798215801e8aa14eb1c3cffa064a6",
        "folded.spkc":
            "2120d97718645a6d504c667eb078967aec39c4341734315e41d0943606024fa8",
        "lava/README.md":
            "ff89a2ef7db03230f6701eb6580de19908e45b766341c9efda9eae1dba237c60",
        "lava/manifest.json":
            "68298f1cd8aae67af2c72ade21ee5ea8a6720c4cbf46967f72f50ba4edca6857",
        "lava/network.json":
            "b99f713a550e6e8b81f4682f3efd16f0d1422a0f19c4a0c5d57650b9a3eb080a",
        "lava/network.npz":
            "43c210ef06965da28d8c8b114e39e3c60ed66cd601ef20585923ebd3bbed3688",
        "lava/run_lava.py":
            "7dbfd127b55e999ca8d9c9fed32c7b97e7191f819cbb97e03912508475b07ca1",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "f29de794f1dcda082621a36d5b9868fbcde6fa18cc70421909c15d71881e91bd",
        "lava/spikec_lava/npzio.py":
            "d55a1b82199f52085252882d621d71fa34dd198b31a8e6c65559274cbe1c2558",
        "lava/spikec_lava/procs.py":
            "005b1823ce46caa588f944ec4362e1202e7300b6af2ef0c1ba4a725f91855729",
        "report.json":
            "01c68632a4137753eb98827af9ed9a58fb72871775a59135112ce18d871023f5",
    },
    "spikformer_v2_mnist5k-nir-decompose": {
        "export.json":
            "401d7c64b21ac88812a20c48b65297ea8d6b8a5121439bf517cd9cd54636f029",
        "model.nir":
            "3f68fefaa24933d6f37a105e8520010f1aceeffbb413e05cc5c6c15c8f221e85",
    },
    "spikformer_v2_mnist5k-nir-host": {
        "export.json":
            "b14e70362b45b49f211e37962f5305b100f1930ea1f5bc08c5496b3dc52cc1cc",
        "model.nir":
            "5fb5be48b62f4a55919204a365911761f8ee077daa1b4b29df1ee793a7129f5d",
    },
    "spikformer_v2_mnist5k-onnx": {
        "export.json":
            "7095434eff0d4437a65a03228430e04e87185dcc4334d8112ef1801c5f3ef818",
        "model.onnx":
            "b471d1c4b162f3ef473f70047f0d1e917a4d9d7a1a76b6fd3cae26001162c5b5",
    },
}


def _args(run: str) -> list[str]:
    name, _, rest = run.partition("-")
    args = [f"examples/checkpoints/{name}.pt"]   # relative: the graph's meta records the path
    if rest == "onnx":
        return args + ["--target", "onnx"]
    if rest.startswith("nir-"):
        return args + ["--target", "nir", "--ssa", rest[4:]]
    return args + ["--target", "loihi2", "--ssa", rest]


@pytest.mark.parametrize("run", sorted(PINNED))
def test_shipped_checkpoint_artifacts_are_unchanged(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    try:
        main(["compile", *_args(run), "-o", str(out)])
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    got = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(out.rglob("*")) if p.is_file()}
    assert sorted(got) == sorted(PINNED[run])
    changed = [f for f in got if got[f] != PINNED[run][f]]
    assert not changed, f"{run}: artifacts changed: {changed}"
