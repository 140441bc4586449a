# FlagAI's GLM title-generation example (examples/glm_title_generation), as FlagAI runs it.
from flagai.auto_model.auto_loader import AutoLoader
from flagai.model.predictor.predictor import Predictor

auto_loader = AutoLoader("seq2seq",
                         model_name="GLM-large-ch",
                         model_dir="./checkpoints/")
model = auto_loader.get_model()
tokenizer = auto_loader.get_tokenizer()

predictor = Predictor(model, tokenizer)

test_data = [
    "北京是中国的首都，也是一座历史悠久的城市。",
    "深度学习模型需要大量的数据和计算资源。",
]
for text in test_data:
    print(predictor.predict_generate_beamsearch(text, out_max_length=12, beam_size=3))
