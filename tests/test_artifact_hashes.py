"""Artifacts of the shipped checkpoints are byte-identical to the pinned ones.

The first pins were produced before the dispatch/rewrite/enum refactor of issue 11 (commit
e82f332 of main), and the refactored code reproduced them byte for byte. They were re-pinned once
afterwards, on purpose, for the changes of issue 14 and 13 that alter artifacts (``.spkc``
format 2 with its SHA-256, the output marker ``.spikec-output.json``, the Lava runner moved into
``spikec_lava/runner.py``, the bundle's format 2 with weight-shared convolutions), with
``scripts/repin_artifact_hashes.py``, which runs, for every ``examples/checkpoints/NAME.pt``::

    spikec compile NAME.pt --target loihi2 --ssa host|decompose -o NAME-host|NAME-decompose
    spikec compile NAME.pt --target nir --ssa host|decompose -o NAME-nir-host|NAME-nir-decompose
    spikec compile NAME.pt --target onnx -o NAME-onnx

run in the repository root (the graph's meta records the checkpoint path as given) and
``sha256sum`` of every file written (no ``--data``/``--calib``: the result does not depend on
float summation order). V1's and the Spike-driven Transformer's NIR exports are refused (a
transpose outside attention), so they have no NIR rows. A change that alters an artifact on purpose (a new header field, a checksum) re-pins
them: run ``scripts/repin_artifact_hashes.py`` and review the diff. Re-pinned for issue 12's soft
reset: the bundled runtime (``spikec_lava/procs.py``, ``network.py``) gained ``SoftLIFReset``, so
every Lava bundle's two runtime files, its ``manifest.json`` and the ``report.json`` that names the
bundle hash changed; no graph, ``network.json`` or ``network.npz`` byte did.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytest.importorskip("torch")

from spikec.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PINNED: dict[str, dict[str, str]] = {
    "sdt_fmnist-decompose": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "007402de5bff2b35e28feb1f5acfd209f63ab4eb831ade92db81563c0cda39ee",
        "float.spkc":
            "c035367890e0c5e3cc3b1ef4141331d9fc160c82475c2b7b9b3f0de4dd10f183",
        "folded.spkc":
            "238e96ab24cc610bf72d21095ec1fad2149d24a1b830841c22938bd7242ae4f3",
        "lava/README.md":
            "20dbecb71d225c735a12806b7599660a9153c8dd36b0611ac764f80e1c2eb261",
        "lava/manifest.json":
            "892c3b7c4b0708f2fa65e26c36fd82e72ba12ce89c72453f916a3e11cf322337",
        "lava/network.json":
            "776d68779e7b69e888f245aa5c98ca85e8a83e38969b74554cc02a5c29ebb862",
        "lava/network.npz":
            "48ee9163dd8ca1a21110717488808a501f93fb9478c2a31967f54ab6be9fc263",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "28f3d4167f1642ab56010bec9f443e2e2b8a33e3da2062cfee60358846049ce4",
    },
    "sdt_fmnist-host": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "007402de5bff2b35e28feb1f5acfd209f63ab4eb831ade92db81563c0cda39ee",
        "float.spkc":
            "c035367890e0c5e3cc3b1ef4141331d9fc160c82475c2b7b9b3f0de4dd10f183",
        "folded.spkc":
            "238e96ab24cc610bf72d21095ec1fad2149d24a1b830841c22938bd7242ae4f3",
        "lava/README.md":
            "8940d78fd977db8bf47f0387b9516744c641ce607b498bcea134962d99bbc3ab",
        "lava/manifest.json":
            "9aa5d63baf00d92abe275ea32770b5abf950bc59f38bb1cfcff72e0e51f69559",
        "lava/network.json":
            "28498e73982e52bd8f4b33d7ade472642a700e58b66f98cf561dc9efa60dfde9",
        "lava/network.npz":
            "48ee9163dd8ca1a21110717488808a501f93fb9478c2a31967f54ab6be9fc263",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "c9226c4b859a3b1efcd6c4aa6edd58ea4bace21f4e5cfe2ff2da52779322e018",
    },
    "sdt_fmnist-onnx": {
        ".spikec-output.json":
            "1402ad043b9f7c0e0388b3ac1a0dad864c8ecb92ee0a710f566265adfe6a8cd7",
        "export.json":
            "03eed9447cb76a9ead4618ffbb16797eb7441be8caf722c3aa2fcabdebd0ebaf",
        "model.onnx":
            "ad5f681f8e9c25b51e23fb114cb05634f8922db7f55470a4b734b99cdd694a7a",
    },
    "spikformer_v1_fmnist-decompose": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "777a6e488ac9145acd81d7bb9089198324bf0e55a67c41dcc1d97019e110f845",
        "float.spkc":
            "4aa997bd454a63ce8b736d458afb2f31a0cfec1935b51c5a4e7796810736c511",
        "folded.spkc":
            "fcb7df459e0701ec8546689a50a7fb1242cb2671891d8503140d2e47941b32e3",
        "lava/README.md":
            "f2bf64670f694dd4feb058448a49941ce3c15b7b670543de76b4ca6731b9c292",
        "lava/manifest.json":
            "22b6f3e69c4045c51ee87912177dbe69af5452d8a215c76c4a3aa083393a8093",
        "lava/network.json":
            "86904c0690a31a22ea6b1251633c3ae11e1aa81075147a2229a08dee3314e739",
        "lava/network.npz":
            "b4d942cd2499586294c2a79b26200a7b467855a6fd644e67ca6c0c2c6f81a626",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "446b0291bfb8f2d725995039dac9059426b47d3e4008b975cc731c82b6b0204a",
    },
    "spikformer_v1_fmnist-host": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "777a6e488ac9145acd81d7bb9089198324bf0e55a67c41dcc1d97019e110f845",
        "float.spkc":
            "4aa997bd454a63ce8b736d458afb2f31a0cfec1935b51c5a4e7796810736c511",
        "folded.spkc":
            "fcb7df459e0701ec8546689a50a7fb1242cb2671891d8503140d2e47941b32e3",
        "lava/README.md":
            "2a8de24f489c97b94240bdf191481ed653aead54c4d2273a8f9fb178815107df",
        "lava/manifest.json":
            "c3be9f83cb4155db5b3a1ec79313521920b915cd3ecb1039904678884dc568cf",
        "lava/network.json":
            "92ee58003b5c0314fac1b347cec1615233e8fa7cfd3078d0076e7e84bf1b2641",
        "lava/network.npz":
            "e0f28d79a79ed5eea9a27c15d0db30c8e0a9649c6805b2c1acecbcda0c283c30",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "06cb5917cd80da0efdc3aad86e426cd0c0306b125aa13051d50656ab90d72727",
    },
    "spikformer_v1_fmnist-onnx": {
        ".spikec-output.json":
            "1402ad043b9f7c0e0388b3ac1a0dad864c8ecb92ee0a710f566265adfe6a8cd7",
        "export.json":
            "2619f3d62f31060293e0c519a068cd55624c59425b15ba88f190769350fa8534",
        "model.onnx":
            "d2f9198b43dd20ead5b3bc4f3d7a9154e46b592301963b8f1c3eefce2b70da30",
    },
    "spikformer_v2_fmnist-decompose": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "4ab9d112a671f86f4e47c0b5b120d2003689259204907d750c92d178fc8571d9",
        "float.spkc":
            "47ba4e93682acf89a7d04f6204b1c446e26095131f0befcb447a84831d912bda",
        "folded.spkc":
            "3d1689f34288225078745b49d6c250c21ed2f5530dc7d092c1fa5609d2c9f597",
        "lava/README.md":
            "8973cc9ae06071a97b31779558fd06e9ca8aa73fd382bf0f57c703b6099aa84d",
        "lava/manifest.json":
            "87955ddcbb02a246fad0a4303561d405d517eb19f015fe16911ca82b330fbb82",
        "lava/network.json":
            "c2d394942138586b836544c813b0e81d7d34f0f09015375377c3cb4bd251b841",
        "lava/network.npz":
            "95c3f1cbb36248bdcdfa82307e7843ee290e916d1bb435063fedb77d79b0dc5f",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "e44cd197445f1801798559d888a8f7021bf384263ac8244c9b9fbc965983e46e",
    },
    "spikformer_v2_fmnist-host": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "4ab9d112a671f86f4e47c0b5b120d2003689259204907d750c92d178fc8571d9",
        "float.spkc":
            "47ba4e93682acf89a7d04f6204b1c446e26095131f0befcb447a84831d912bda",
        "folded.spkc":
            "3d1689f34288225078745b49d6c250c21ed2f5530dc7d092c1fa5609d2c9f597",
        "lava/README.md":
            "a88073f7c80446cbc7c374cad0c7b97337df503e190e1610c8e81cedae56d606",
        "lava/manifest.json":
            "dc041472c46762e6bc6187511c7f887ff5886576768f7c5fad261a2d500b5495",
        "lava/network.json":
            "2ba89e8f722404dda3b3ea85d81e7671c5740b4a775e38a7f82cbbd2cd13c957",
        "lava/network.npz":
            "0f21e538ff1e4b3c0b50bfb35d86fe66253820215ee05d76b666122f77660507",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "25b24aac8b39787607968f72cc4818ad855682bc7ad0165da7ab7b3d733be4db",
    },
    "spikformer_v2_fmnist-nir-decompose": {
        ".spikec-output.json":
            "01b38c73b9338efc7553eabe951742fb59ccef8a5a7b45679644ab10d9c4c2c1",
        "export.json":
            "86260e0afee46aa40a1d28d8b03dfe31fac6cc5bef1f92942792a570c2044a03",
        "model.nir":
            "81a3eef3819de2b950efdab7b16137b937784fa75cbaf59f0bb7ef1768329b0d",
    },
    "spikformer_v2_fmnist-nir-host": {
        ".spikec-output.json":
            "01b38c73b9338efc7553eabe951742fb59ccef8a5a7b45679644ab10d9c4c2c1",
        "export.json":
            "ee9ac689575bbc537197963cf9227fe3997850915268f2f8455d83f36b952e57",
        "model.nir":
            "7d33b7fb3feb97d6af80b720d15b11c555fba9647c03d8e2feaf481e6f2ab974",
    },
    "spikformer_v2_fmnist-onnx": {
        ".spikec-output.json":
            "1402ad043b9f7c0e0388b3ac1a0dad864c8ecb92ee0a710f566265adfe6a8cd7",
        "export.json":
            "c36a9434329a3cb0a3aa32e32787be9a1fcd5ef11f1cdcf5eb1495247ed87949",
        "model.onnx":
            "80775309a97b24cb2c0e0683fb9a03ac6ee5d32e0f79f3b19f82ff2df5771d79",
    },
    "spikformer_v2_fmnist_iand-decompose": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "285ffef89ff906ed546d25c85efc156b64f8d51f00a9a467519eef5fe5d1d8fe",
        "float.spkc":
            "9cbd5d020d6adb8fc661cda9e5d47f400ad3e8edaa67359124db575ff81b0dca",
        "folded.spkc":
            "4426d62ae04460fc483ede35a8d281a3c5c46585e98a4deca14d46033f9ecde8",
        "lava/README.md":
            "d19e410fc76b9182e6c82a52e03580ae58075ec6b0afc68b331eed086423fc73",
        "lava/manifest.json":
            "1bcb5995987b1939b246f880f59e67fd7f96a4161bb0a30c5a09167e1d32e1e9",
        "lava/network.json":
            "aa83c4f8c58d406627c767002d3c33f904ae7f8b4837605bbc1cf6e111331203",
        "lava/network.npz":
            "3c5f5dc540efbdd39f779236695da681a72dac669a9b1d60b6cf990c598ec2f3",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "0b2082e12bebee64e5f0256610e1e1d45ff1c2cbc2e84e0cf6e0fe0f0cb0e496",
    },
    "spikformer_v2_fmnist_iand-host": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "285ffef89ff906ed546d25c85efc156b64f8d51f00a9a467519eef5fe5d1d8fe",
        "float.spkc":
            "9cbd5d020d6adb8fc661cda9e5d47f400ad3e8edaa67359124db575ff81b0dca",
        "folded.spkc":
            "4426d62ae04460fc483ede35a8d281a3c5c46585e98a4deca14d46033f9ecde8",
        "lava/README.md":
            "d0360a8ad8afc68909f6c065d5b19c5ea63dbcc1853ec79cf2ff8d55e4d13e49",
        "lava/manifest.json":
            "c638c862b10638c5e6bdebae6314070fe8cf4c5827169fc7ee7b9cd5df72f553",
        "lava/network.json":
            "e31fce417cb1de76af393e82baf67e3298f3c1fa7ce661aae928486fe78c36df",
        "lava/network.npz":
            "dcbf185d663a0b441c3953ebd9637939f9ce1d27766b0633c8404800ebcc2c2a",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "9d2fcedad166fbbf541780c5dcf8ebcf2cb2c81e8443cc9e1b527947a3754697",
    },
    "spikformer_v2_fmnist_iand-nir-decompose": {
        ".spikec-output.json":
            "01b38c73b9338efc7553eabe951742fb59ccef8a5a7b45679644ab10d9c4c2c1",
        "export.json":
            "df3ecabb07a91794d6f8607b811fe1c3f2a38f1650e25156e08033eb61c298a0",
        "model.nir":
            "9a74b5c7fc0de3ef7feae1d258acced048fe954c2dd6f32e40fa555aacef27fe",
    },
    "spikformer_v2_fmnist_iand-nir-host": {
        ".spikec-output.json":
            "01b38c73b9338efc7553eabe951742fb59ccef8a5a7b45679644ab10d9c4c2c1",
        "export.json":
            "477e2bb14c60b0a46945c7bd0a7592ce1fdacf85040fa7c03e3c1e9359439f1b",
        "model.nir":
            "fa6f3b035d682d83c9a7968db10d0be44f8e05a9398438071efce4defd50868d",
    },
    "spikformer_v2_fmnist_iand-onnx": {
        ".spikec-output.json":
            "1402ad043b9f7c0e0388b3ac1a0dad864c8ecb92ee0a710f566265adfe6a8cd7",
        "export.json":
            "fd2bd56b5bd4f0da31ace1ebceecad2f94f616d0da20ff976c548ac9699cc9b5",
        "model.onnx":
            "4d43de7db8faf9bb79571551dfe26fe4473d0b81c8bc08e5a21bbac3d45219c1",
    },
    "spikformer_v2_mnist5k-decompose": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "2ebf7d6d8e58e8a0ac40786f0cbd18708b67a6327f99236b8a9fe428103cff0b",
        "float.spkc":
            "31456de38413c6f0547cb8707308807c83d2318a949d4e7ece0b2e3b8481db15",
        "folded.spkc":
            "fcc73f876833068e59ff96716a52506a3bff21b1ca75bd8d5465efd58cbd35fa",
        "lava/README.md":
            "aa2966c466e8f01f41afbda5575d1477531ec5d41ec14dfe1569868e2325eca7",
        "lava/manifest.json":
            "16caa7cf54ad7a2e2db1d80b687cc0120803dbde46b2f44d211e1d575082f19c",
        "lava/network.json":
            "a18bb69c3428dd701559c2fbcb5e21ed37feaecbd9b884c424b38c754196d25f",
        "lava/network.npz":
            "059f3ce6c159e3a0fb2085eec4a782c8e4a192103020fb7d60fd0420df252e67",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "1bf24c55e9a9ed8b4c5c19b3c79a5b2c0913a6990efa95f802937ec41b158051",
    },
    "spikformer_v2_mnist5k-host": {
        ".spikec-output.json":
            "115c0b1e004d1cf82a27dfa77450b834a008c55cdb985ee812ee9ecca4b9bfcc",
        "compiled.spkc":
            "2ebf7d6d8e58e8a0ac40786f0cbd18708b67a6327f99236b8a9fe428103cff0b",
        "float.spkc":
            "31456de38413c6f0547cb8707308807c83d2318a949d4e7ece0b2e3b8481db15",
        "folded.spkc":
            "fcc73f876833068e59ff96716a52506a3bff21b1ca75bd8d5465efd58cbd35fa",
        "lava/README.md":
            "d64f74e7b1b32b42d66718d2036c1bea1d3cf39bac85b2c1b86bc63abced7b80",
        "lava/manifest.json":
            "aadfeb83e04389090c8075b57bf304f5c7b17313868fe01d9c57da271791ab6e",
        "lava/network.json":
            "d0e5fb295ec1eeed9326de7cb11c97fa5dcc96f8280cf3cf81f56062953ebcf1",
        "lava/network.npz":
            "57933d2a141569c5edc034357deeff41605e2a89b46563054098c3bd6d0077d4",
        "lava/run_lava.py":
            "33de87441e3f0e5b010555db2356d155958e7e58849d98ce2d51f441be35dceb",
        "lava/spikec_lava/__init__.py":
            "2cd593323bb7e4161ffde684e6189acc5775ff4bc1e4eec3b99c70aba82f3a66",
        "lava/spikec_lava/network.py":
            "4b0514f386cadbab0eb183bbeb99fc07fb7c7221025d1ad9de1022563589d695",
        "lava/spikec_lava/npzio.py":
            "0cf8b3b24e940d1ebca28d8a5433e452759d64f52c11ec34a9097306f25abd83",
        "lava/spikec_lava/procs.py":
            "3106b47e951d4de9f78a757be85ef1305c43a300a34ec39554cd5a9deb5b5bf9",
        "lava/spikec_lava/runner.py":
            "f4dc8f31740521ee1de59da410e999c548178fec988824d37f5d1eea658fe271",
        "report.json":
            "28a1785cd5a37fca4f355f1d0ab5d98227b7b009899f368354ee2f65432be8fc",
    },
    "spikformer_v2_mnist5k-nir-decompose": {
        ".spikec-output.json":
            "01b38c73b9338efc7553eabe951742fb59ccef8a5a7b45679644ab10d9c4c2c1",
        "export.json":
            "df89b52064158f73695d2338e667c63aefe6742a8f8751f00bf782bf9bf580ea",
        "model.nir":
            "211dffd936c10d5d47a4dd6ddcc8a9bde9ca245afbc97e4f2b607970291a3031",
    },
    "spikformer_v2_mnist5k-nir-host": {
        ".spikec-output.json":
            "01b38c73b9338efc7553eabe951742fb59ccef8a5a7b45679644ab10d9c4c2c1",
        "export.json":
            "b14e70362b45b49f211e37962f5305b100f1930ea1f5bc08c5496b3dc52cc1cc",
        "model.nir":
            "5fb5be48b62f4a55919204a365911761f8ee077daa1b4b29df1ee793a7129f5d",
    },
    "spikformer_v2_mnist5k-onnx": {
        ".spikec-output.json":
            "1402ad043b9f7c0e0388b3ac1a0dad864c8ecb92ee0a710f566265adfe6a8cd7",
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
