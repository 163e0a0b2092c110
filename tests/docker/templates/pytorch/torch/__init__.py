"""A stand-in for torch with only what the forge's example algorithm calls (CPU only)."""


class _Cuda:
    @staticmethod
    def is_available() -> bool:
        return False


cuda = _Cuda()


def device(name: str) -> str:
    return name


class _Tensor:
    def to(self, where: str) -> "_Tensor":
        return self


def randn(*shape: int) -> _Tensor:
    return _Tensor()


class nn:  # noqa: N801 - torch's own name
    class Linear:
        def __init__(self, inputs: int, outputs: int) -> None:
            pass

        def to(self, where: str) -> "nn.Linear":
            return self

        def __call__(self, x: _Tensor) -> _Tensor:
            return x
